/**
 * The narrow HTTP contract between the proxy and the endpoints Portcullis serves itself (the
 * authenticate host, and `/.pomerium/*` on route hosts). The proxy has already applied its
 * request hygiene (host, path normalisation, header screening) and read a small body; handlers
 * never touch sockets, so they can run behind any front end and are tested as plain functions.
 */
import type { ClientCertificateInfo } from '../shared/x509.js'
import type { RenderedPage } from '../ui/pages.js'

export interface EndpointRequest {
  readonly requestId: string
  readonly method: string
  /** Canonical host (lower case, no port). */
  readonly host: string
  /** Host header as sent (may carry a port): used to build absolute URLs back to this host. */
  readonly authority: string
  /** Normalised path. */
  readonly path: string
  /** Raw query string including the leading `?`, or ''. */
  readonly query: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Request body of POSTs (at most {@link MAX_ENDPOINT_BODY} bytes), else empty. */
  readonly body: Buffer
  readonly clientIp: string
  /** The listener's scheme. */
  readonly scheme: 'http' | 'https'
  /** The connection's client certificate, when the listener asks for one (`downstream_mtls`). */
  readonly clientCertificate?: ClientCertificateInfo | undefined
  /**
   * Names of the listener address this request reached: its IP (IPv6 in brackets), and
   * `localhost` on loopback. A tunnel client may run its login on them (docs/tunnels.md).
   */
  readonly localNames?: readonly string[] | undefined
}

export interface EndpointResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly cookies?: readonly string[]
  readonly body: string
}

export interface EndpointHandler {
  /** Undefined when the request is not for this handler (the proxy goes on routing). */
  handle(request: EndpointRequest): Promise<EndpointResponse> | undefined
}

/** Form bodies of sign-out, callbacks (Apple form_post) and back-channel logout stay small. */
export const MAX_ENDPOINT_BODY = 64 * 1024

export function page(status: number, rendered: RenderedPage, cookies?: readonly string[]): EndpointResponse {
  return { status, headers: { ...rendered.headers }, body: rendered.html, ...(cookies ? { cookies } : {}) }
}

export function redirect(location: string, cookies?: readonly string[]): EndpointResponse {
  return { status: 302, headers: { location, 'cache-control': 'no-store' }, body: '', ...(cookies ? { cookies } : {}) }
}

export function json(status: number, value: unknown, extra: Readonly<Record<string, string>> = {}): EndpointResponse {
  return { status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra }, body: JSON.stringify(value) }
}

export function text(status: number, body: string, extra: Readonly<Record<string, string>> = {}): EndpointResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra }, body }
}

/** A form-encoded body's fields; empty for any other content type. */
export function formFields(req: EndpointRequest): URLSearchParams {
  const type = single(req.headers['content-type']) ?? ''
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) return new URLSearchParams()
  return new URLSearchParams(req.body.toString('utf8'))
}

export function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v
}
