/**
 * Error responses a person (or a script) reads: an HTML page, or JSON when the client prefers it
 * (reference fact 22: `{"error": "...", "request_id": "..."}`). Every page carries the request id
 * so that a report can be matched with the log line.
 */
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

/**
 * True when the client's Accept header prefers JSON over HTML. A missing Accept or `*\/*`
 * means a browser-like client and gets HTML.
 */
export function prefersJson(accept: string | undefined): boolean {
  if (!accept) return false
  let best = ''
  let bestQ = -1
  for (const part of accept.split(',')) {
    const [typeRaw, ...params] = part.split(';')
    const type = (typeRaw ?? '').trim().toLowerCase()
    if (type !== 'text/html' && type !== 'application/json' && type !== 'text/plain') continue
    let q = 1
    for (const p of params) {
      const [k, v] = p.split('=')
      if (k?.trim() === 'q' && v !== undefined) q = Number(v) || 0
    }
    // Equal quality: the first listed wins, so only strictly better replaces it.
    if (q > bestQ) {
      best = type
      bestQ = q
    }
  }
  return best === 'application/json'
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
