/**
 * The SCIM listener (`scim.address`, docs/directory.md): `/scim/v2/*` over plain HTTP, meant to
 * sit behind a Portcullis route (which terminates TLS) or a private network. Every request needs
 * `Authorization: Bearer <token>` whose SHA-256 is in `scim.bearer_token_sha256` (compared in
 * constant time; the tokens themselves are never stored). Bodies are bounded: more than
 * {@link MAX_PAYLOAD_BYTES} is refused with 413 before it is read whole.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'

import { closeServer, listenOn } from '../../observability/listen.js'
import { guardedRequestListener } from '../../shared/boundary.js'
import type { Logger } from '../../shared/log.js'
import { ScimError } from './errors.js'
import { MAX_PAYLOAD_BYTES } from './schemas.js'
import { scimError } from './service.js'
import type { ScimService } from './service.js'

export const SCIM_PREFIX = '/scim/v2'

export interface ScimListenerOptions {
  readonly address: string
  readonly service: ScimService
  readonly logger: Logger
  /** SHA-256 digests (hex) of the accepted tokens, as configured now (reloads change them). */
  readonly tokenDigests: () => readonly string[]
}

export interface ScimListener {
  readonly url: string
  close(): Promise<void>
}

/** Whether `authorization` carries a bearer token whose digest is configured. */
export function bearerAccepted(authorization: string | undefined, digests: readonly string[]): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
  if (!m) return false
  const digest = createHash('sha256').update(m[1] as string).digest()
  let ok = false
  for (const d of digests) {
    const want = Buffer.from(d, 'hex')
    if (want.length === digest.length && timingSafeEqual(want, digest)) ok = true
  }
  return ok
}

function send(res: ServerResponse, status: number, headers: Readonly<Record<string, string>>, body: string, requestId: string): void {
  res.writeHead(status, { ...headers, 'x-request-id': requestId })
  res.end(body)
}

function sendError(res: ServerResponse, e: ScimError, requestId: string, extra: Readonly<Record<string, string>> = {}): void {
  const r = scimError(e)
  send(res, r.status, { ...r.headers, ...extra }, r.body, requestId)
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? '0')
  if (declared > MAX_PAYLOAD_BYTES) return undefined
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_PAYLOAD_BYTES) return undefined
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

export async function startScimListener(options: ScimListenerOptions): Promise<ScimListener> {
  const { logger, service } = options
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID()
    const url = new URL(req.url ?? '/', 'http://scim.invalid')
    if (url.pathname !== SCIM_PREFIX && !url.pathname.startsWith(`${SCIM_PREFIX}/`)) {
      sendError(res, new ScimError(404, undefined, `SCIM lives under ${SCIM_PREFIX}`), requestId)
      return
    }
    if (!bearerAccepted(req.headers.authorization, options.tokenDigests())) {
      logger.warn({ requestId, clientIp: req.socket.remoteAddress, path: url.pathname }, 'scim request refused: no valid bearer token')
      sendError(res, new ScimError(401, undefined, 'A valid bearer token is required (scim.bearer_token_sha256).'), requestId, { 'www-authenticate': 'Bearer realm="scim"' })
      return
    }
    const body = await readBody(req)
    if (!body) {
      sendError(res, new ScimError(413, undefined, `The body is larger than ${MAX_PAYLOAD_BYTES} bytes (ServiceProviderConfig).`), requestId, { connection: 'close' })
      req.resume()
      return
    }
    const type = (req.headers['content-type'] ?? '').toLowerCase()
    if (body.length > 0 && type !== '' && !type.startsWith('application/scim+json') && !type.startsWith('application/json')) {
      sendError(res, new ScimError(415, undefined, 'Send application/scim+json (or application/json).'), requestId)
      return
    }
    const forwardedProto = req.headers['x-forwarded-proto']
    const proto = forwardedProto === 'https' || forwardedProto === 'http' ? forwardedProto : 'http'
    const host = req.headers['x-forwarded-host'] ?? req.headers.host ?? 'localhost'
    const answer = await service.handle({
      method: req.method ?? 'GET',
      path: url.pathname.slice(SCIM_PREFIX.length) || '/',
      query: url.searchParams,
      headers: req.headers,
      body,
      requestId,
      baseUrl: `${proto}://${Array.isArray(host) ? host[0] : host}${SCIM_PREFIX}`,
    })
    send(res, answer.status, answer.headers, answer.body, requestId)
  }
  const server: Server = createServer(
    guardedRequestListener((req, res) => handle(req, res), {
      listener: 'scim',
      logger,
      answer: (_req, res, requestId) => sendError(res, new ScimError(500, undefined, `Internal error (request id ${requestId}).`), requestId),
    }),
  )
  server.headersTimeout = 10_000
  server.requestTimeout = 60_000
  const url = await listenOn(server, options.address, 'http')
  logger.info({ url: `${url}${SCIM_PREFIX}` }, 'scim listening')
  return { url, close: () => closeServer(server) }
}
