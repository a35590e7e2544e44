/**
 * A proxy that does not run the authenticate service passes requests for the authenticate host
 * to it at `authenticate_internal_service_url`, as Pomerium's proxy does: same method, path,
 * query, headers and body, the Host the browser sent (the authenticate service checks signed URLs
 * against it), and `X-Forwarded-For` / `X-Forwarded-Proto` for its logs. TLS to an `https://` URL
 * is always verified (system roots plus `certificate_authority`), with the authenticate host as
 * the expected name when the URL names an IP address.
 */
import { isIP } from 'node:net'
import { rootCertificates } from 'node:tls'
import { Agent, request } from 'undici'
import type { Logger } from '../shared/log.js'
import { prefersJson } from '../ui/negotiate.js'
import { errorPage } from '../ui/pages.js'
import { json, page } from './endpoint.js'
import type { EndpointRequest, EndpointResponse } from './endpoint.js'

interface AuthenticateForwarderOptions {
  readonly url: string
  /** The authenticate host (TLS name when the URL is an IP address). */
  readonly authenticateHost: string
  /** Extra trusted CA certificates (PEM). */
  readonly ca?: string | undefined
  /** Name expected in the service's certificate (`override_certificate_name`). */
  readonly serverName?: string | undefined
  readonly logger: Logger
  readonly timeoutMs?: number
}

export interface AuthenticateForwarder {
  handle(request: EndpointRequest): Promise<EndpointResponse>
  close(): Promise<void>
}

/** Not passed on in either direction: hop-by-hop, recomputed, or set by this proxy. */
const DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length', 'x-request-id', 'date'])
/** Pages and redirects of the authenticate service are small; anything larger is refused. */
const MAX_RESPONSE_BYTES = 1024 * 1024

export function createAuthenticateForwarder(options: AuthenticateForwarderOptions): AuthenticateForwarder {
  const base = new URL(options.url)
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`authenticate_internal_service_url ${options.url}: want http:// or https://`)
  const urlHost = base.hostname.replace(/^\[|\]$/g, '')
  const servername = options.serverName ?? (isIP(urlHost) ? options.authenticateHost : urlHost)
  const dispatcher = new Agent({
    connect: {
      rejectUnauthorized: true,
      servername,
      ...(options.ca ? { ca: [...rootCertificates, options.ca] } : {}),
    },
  })
  const timeoutMs = options.timeoutMs ?? 10_000
  return {
    async handle(req) {
      const headers: Record<string, string | string[]> = {}
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined || name.startsWith(':') || DROPPED.has(name)) continue
        headers[name] = value
      }
      headers['host'] = req.authority
      headers['x-forwarded-for'] = req.clientIp
      headers['x-forwarded-proto'] = req.scheme
      headers['x-request-id'] = req.requestId
      try {
        const res = await request(new URL(`${req.path}${req.query}`, base), {
          dispatcher,
          method: req.method as 'GET',
          headers,
          ...(req.body.length > 0 ? { body: req.body } : {}),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        })
        const chunks: Buffer[] = []
        let size = 0
        for await (const chunk of res.body) {
          size += (chunk as Buffer).length
          if (size > MAX_RESPONSE_BYTES) throw new Error('the authenticate service answered more than 1 MiB')
          chunks.push(chunk as Buffer)
        }
        const out: Record<string, string> = {}
        let cookies: string[] = []
        for (const [name, value] of Object.entries(res.headers)) {
          if (value === undefined || DROPPED.has(name)) continue
          if (name === 'set-cookie') cookies = Array.isArray(value) ? value : [value]
          else out[name] = Array.isArray(value) ? value.join(', ') : value
        }
        return { status: res.statusCode, headers: out, body: Buffer.concat(chunks).toString('utf8'), ...(cookies.length > 0 ? { cookies } : {}) }
      } catch (err) {
        options.logger.error({ requestId: req.requestId, url: base.origin, err: err instanceof Error ? err.message : String(err) }, 'the authenticate service could not be reached')
        const message = 'The authenticate service is unavailable. Try again in a moment.'
        if (prefersJson(req.headers['accept'])) return json(502, { error: message, request_id: req.requestId })
        return page(502, errorPage({ status: 502, title: 'Bad Gateway', message, requestId: req.requestId }))
      }
    },
    close: () => dispatcher.close(),
  }
}
