/**
 * The metrics listener (`metrics_address`): `GET /metrics` in the Prometheus text format, on its
 * own listener only, never on a route host or the authenticate host (hostile-input case: exposed endpoints / information leaks).
 *
 * - `metrics_basic_auth` (base64 of `user:password`) requires those credentials, compared in
 *   constant time; a wrong or missing header gets 401 with a `WWW-Authenticate` challenge.
 * - `metrics_certificate` + `metrics_certificate_key` serve TLS; `metrics_client_ca` also
 *   requires a client certificate signed by that CA (mTLS).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import * as http from 'node:http'
import * as https from 'node:https'
import { guardedRequestListener } from '../shared/boundary.js'
import type { HandlerOutcome } from '../shared/boundary.js'
import type { Logger } from '../shared/log.js'
import { closeServer, listenOn } from './listen.js'

export interface MetricsServerOptions {
  readonly address: string
  /** `user:password` (already decoded from base64). */
  readonly basicAuth?: string | undefined
  readonly tls?: { readonly cert: string; readonly key: string; readonly clientCa?: string | undefined } | undefined
  readonly exposition: () => Promise<string>
  readonly logger: Logger
}

export interface MetricsServer {
  readonly url: string
  close(): Promise<void>
}

/** Decodes `metrics_basic_auth`; undefined when it is not base64 of `user:password`. */
export function decodeMetricsBasicAuth(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/=_-]+$/.test(value)) return undefined
  const decoded = Buffer.from(value, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon > 0 ? decoded : undefined
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const expected = options.basicAuth === undefined ? undefined : digest(`Basic ${Buffer.from(options.basicAuth).toString('base64')}`)
  const handle = (req: http.IncomingMessage, res: http.ServerResponse): HandlerOutcome => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
      return
    }
    if (expected && !timingSafeEqual(digest(req.headers.authorization ?? ''), expected)) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="metrics"', 'content-type': 'text/plain; charset=utf-8' }).end('unauthorized\n')
      return
    }
    return options.exposition().then(
      (text) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' })
        res.end(req.method === 'HEAD' ? undefined : text)
      },
      (err: unknown) => {
        options.logger.error({ err }, 'metrics could not be collected')
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics could not be collected\n')
      },
    )
  }
  // The boundary (src/shared/boundary.ts): whatever else fails costs one request a 500.
  const handler = guardedRequestListener(handle, { listener: 'metrics', logger: options.logger })
  const tls = options.tls
  const server = tls
    ? https.createServer({ cert: tls.cert, key: tls.key, ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}) }, handler)
    : http.createServer(handler)
  const url = await listenOn(server, options.address, tls ? 'https' : 'http')
  return {
    url,
    close: () => closeServer(server),
  }
}
