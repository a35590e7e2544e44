/**
 * Error responses a person (or a script) reads: an HTML page, or JSON when the client prefers it
 * (reference fact 22: `{"error": "...", "request_id": "..."}`). Every page carries the request id
 * so that a report can be matched with the log line.
 */

export interface ErrorBody {
  readonly contentType: string
  readonly body: string
}

const STATUS_TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  421: 'Misdirected Request',
  431: 'Request Header Fields Too Large',
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

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

export function renderError(status: number, message: string, requestId: string, json: boolean): ErrorBody {
  if (json) {
    return {
      contentType: 'application/json',
      body: JSON.stringify({ error: message, request_id: requestId }),
    }
  }
  const title = `${status} ${statusTitle(status)}`
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2937}
h1{font-size:1.5rem}.id{color:#6b7280;font-size:.875rem}code{background:#f3f4f6;padding:.1rem .3rem}</style>
</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>
<p class="id">Request ID: <code>${escapeHtml(requestId)}</code></p>
<p class="id">Portcullis</p></body></html>
`
  return { contentType: 'text/html; charset=utf-8', body }
}
