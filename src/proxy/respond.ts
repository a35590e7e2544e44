/**
 * Answers the proxy writes itself (errors, health, redirects, direct responses), for both
 * HTTP/1.1 and HTTP/2 response objects.
 */
import type { ServerResponse } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import type { Denial } from '../authorize/types.js'
import { renderDenial, renderError } from './error-page.js'
import type { ErrorBody } from './error-page.js'

export type AnyResponse = ServerResponse | Http2ServerResponse

export function sendBody(
  res: AnyResponse,
  status: number,
  headers: Record<string, string | number | string[]>,
  body: string,
  headOnly: boolean,
): number {
  if (res.headersSent) {
    res.destroy()
    return 0
  }
  const buf = Buffer.from(body)
  headers['content-length'] = buf.length
  res.writeHead(status, headers)
  if (headOnly) res.end()
  else res.end(buf)
  return buf.length
}

export function sendError(
  res: AnyResponse,
  status: number,
  message: string,
  requestId: string,
  json: boolean,
  extraHeaders: Readonly<Record<string, string>>,
  headOnly: boolean,
): number {
  return sendRendered(res, status, renderError(status, message, requestId, json), requestId, extraHeaders, headOnly)
}

/** Answers a denial of the authorize service: its redirect and headers, the body rendered for this client. */
export function sendDenial(
  res: AnyResponse,
  denial: Denial,
  requestId: string,
  json: boolean,
  extraHeaders: Readonly<Record<string, string>>,
  headOnly: boolean,
): number {
  const headers: Record<string, string> = { ...extraHeaders, ...denial.headers }
  if (denial.location !== undefined) headers['location'] = denial.location
  return sendRendered(res, denial.status, renderDenial(denial, requestId, json), requestId, headers, headOnly)
}

function sendRendered(
  res: AnyResponse,
  status: number,
  page: ErrorBody,
  requestId: string,
  extraHeaders: Readonly<Record<string, string>>,
  headOnly: boolean,
): number {
  return sendBody(
    res,
    status,
    // Configured response headers (set_response_headers) win over the page's own defaults.
    { ...page.headers, ...extraHeaders, 'content-type': page.contentType, 'cache-control': 'no-store', 'x-request-id': requestId },
    page.body,
    headOnly,
  )
}
