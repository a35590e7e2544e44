/**
 * Error responses a person (or a script) reads: an HTML page, or JSON when the client prefers it
 * (as Pomerium: `{"error": "...", "request_id": "..."}`). Every page carries the request id
 * so that a report can be matched with the log line. Denials arrive from the authorize service as
 * data (`Denial`) and are rendered here, on the side that talks to the client.
 */
import type { Denial } from '../authorize/types.js'
import { errorPage } from '../ui/pages.js'

export interface ErrorBody {
  readonly contentType: string
  readonly body: string
  /** Headers the page needs besides its content type (its Content-Security-Policy). */
  readonly headers: Readonly<Record<string, string>>
}

const STATUS_TITLES: Readonly<Record<number, string>> = {
  302: 'Found',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  421: 'Misdirected Request',
  431: 'Request Header Fields Too Large',
  495: 'SSL Certificate Error',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

export function statusTitle(status: number): string {
  return STATUS_TITLES[status] ?? 'Error'
}

export function renderError(status: number, message: string, requestId: string, json: boolean): ErrorBody {
  if (json) {
    return {
      contentType: 'application/json',
      body: JSON.stringify({ error: message, request_id: requestId }),
      headers: {},
    }
  }
  // The same page as every other Portcullis page (layout, stylesheet, CSP).
  const page = errorPage({ status, title: statusTitle(status), message, requestId })
  const { 'content-type': contentType = 'text/html; charset=utf-8', ...headers } = page.headers
  return { contentType, body: page.html, headers }
}

/** What a protected route answers for `/robots.txt` (reference: keep crawlers off protected apps). */
const ROBOTS_TXT = 'User-agent: *\nDisallow: /\n'

/**
 * The answer to a denial for this client: the robots file, JSON (`error`, Pomerium's reason
 * codes as `reasons`, `request_id`) or the error page with the reasons in words, who is signed in
 * (with a way to sign out and try another account), the route and the evaluation details.
 */
export function renderDenial(denial: Denial, requestId: string, json: boolean): ErrorBody {
  if (denial.code === 'robots-txt') return { contentType: 'text/plain; charset=utf-8', body: ROBOTS_TXT, headers: {} }
  if (json) {
    const reasons = denial.policyReasons !== undefined ? { reasons: denial.policyReasons } : {}
    return { contentType: 'application/json', body: JSON.stringify({ error: denial.reason, ...reasons, request_id: requestId }), headers: {} }
  }
  const page = errorPage({
    status: denial.status,
    title: statusTitle(denial.status),
    message: denial.reason,
    requestId,
    ...(denial.reasons !== undefined ? { reasons: denial.reasons } : {}),
    ...(denial.route !== undefined ? { route: denial.route } : {}),
    ...(denial.user !== undefined ? { user: denial.user, signOutUrl: '/.pomerium/sign_out' } : {}),
    ...(denial.details !== undefined ? { details: denial.details } : {}),
  })
  const { 'content-type': contentType = 'text/html; charset=utf-8', ...headers } = page.headers
  return { contentType, body: page.html, headers }
}
