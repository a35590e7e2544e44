/**
 * Google Cloud serverless authentication (`enable_google_cloud_serverless_authentication`): the
 * upstream gets `Authorization: Bearer <Google-signed ID token>` whose audience is the upstream.
 *
 * Pomerium (authorize/evaluator/headers_evaluator.go, google_cloud_serverless.go):
 * - audience: `"https://" + to.Hostname()` of the route's `to` URL (the last one when there are
 *   several): always https, no port, no path, no trailing slash;
 * - token: GET `http://metadata/computeMetadata/v1/instance/service-accounts/default/identity
 *   ?audience=<aud>&format=full` with `Metadata-Flavor: Google`, one fetch at a time per audience,
 *   reused for a fixed 45 minutes;
 * - with the global `google_cloud_serverless_authentication_service_account` set it signs with that
 *   key instead (not implemented here);
 * - on failure it logs and forwards the request without the header.
 *
 * Here: the host is `metadata.google.internal` unless `GCE_METADATA_HOST` (`host[:port]`, as
 * Google's client libraries read it) or the `metadataHost` option says otherwise; the token is
 * cached until five minutes before its own `exp` (measured from its `iat`, so a skewed local clock
 * does not matter); fetches are bounded by a timeout and a body limit; a failure is a
 * `GcpIdentityTokenError` (502) so the request is not sent unauthenticated. If a refresh fails
 * while the cached token is still valid, the cached token is used.
 */
import type { RouteConfig } from '../config/types.js'
import { PortcullisError } from '../shared/errors.js'
import type { UpstreamHeaderChanges } from './kubernetes.js'

export const GCE_METADATA_DEFAULT_HOST = 'metadata.google.internal'
export const GCP_IDENTITY_PATH = '/computeMetadata/v1/instance/service-accounts/default/identity'
const DEFAULT_TIMEOUT_MS = 5_000
const DEFAULT_REFRESH_BEFORE_EXPIRY_MS = 5 * 60_000
/** ID tokens are about 1 KiB (format=full: under 2 KiB). */
const MAX_BODY_BYTES = 64 * 1024

export type GcpIdentityTokenFailure = 'unreachable' | 'timeout' | 'status' | 'malformed'

/** The metadata server could not give a token: the authorizer answers 502 with `publicMessage`. */
export class GcpIdentityTokenError extends PortcullisError {
  readonly audience: string
  readonly failure: GcpIdentityTokenFailure
  /** The metadata server's status, for `failure: 'status'`. */
  readonly upstreamStatus: number | undefined

  constructor(audience: string, failure: GcpIdentityTokenFailure, detail: string, options?: { cause?: unknown; upstreamStatus?: number }) {
    super('ERR_UPSTREAM_BAD_RESPONSE', `Could not get a Google Cloud identity token for ${audience} from the metadata server: ${detail}.`, options)
    this.name = 'GcpIdentityTokenError'
    this.audience = audience
    this.failure = failure
    this.upstreamStatus = options?.upstreamStatus
  }
}

export interface GcpIdentityTokenSourceOptions {
  /** `host[:port]` (or `http://host[:port]`) of the metadata server; default `GCE_METADATA_HOST`, else `metadata.google.internal`. */
  readonly metadataHost?: string
  readonly fetch?: typeof globalThis.fetch
  /** Milliseconds since the epoch; default `Date.now`. */
  readonly now?: () => number
  /** Per fetch; default 5 s. */
  readonly timeoutMs?: number
  /** Refresh this long before expiry (at most half the token's lifetime); default 5 min. */
  readonly refreshBeforeExpiryMs?: number
  /** Where `GCE_METADATA_HOST` is read; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>
}

export interface GcpIdentityTokenSource {
  /** A Google-signed ID token for `audience`: cached, one fetch in flight per audience. Rejects with `GcpIdentityTokenError`. */
  token(audience: string): Promise<string>
  /** The metadata server base URL in use, e.g. `http://metadata.google.internal`. */
  readonly metadataUrl: string
}

interface CachedToken {
  readonly token: string
  /** Local clock: no longer usable. */
  readonly expiresAt: number
  /** Local clock: fetch a new one from here on. */
  readonly refreshAt: number
}

/** The audience Pomerium uses: `https://<hostname of the route's (last) to URL>`. */
export function gcpAudience(route: RouteConfig): string {
  const last = route.to[route.to.length - 1]
  if (last === undefined) throw new TypeError(`route ${route.id} has no \`to\`: no audience for a Google Cloud identity token`)
  return `https://${last.url.hostname}`
}

/** Whether the route asks for a Google Cloud identity token (and has an upstream to send it to). */
export function gcpServerlessEnabled(route: RouteConfig): boolean {
  return route.enableGoogleCloudServerlessAuthentication && route.to.length > 0
}

/**
 * The header changes for a route with `enable_google_cloud_serverless_authentication`, or
 * undefined when it is off. Rejects with `GcpIdentityTokenError`.
 */
export async function gcpServerlessHeaders(route: RouteConfig, source: GcpIdentityTokenSource): Promise<UpstreamHeaderChanges | undefined> {
  if (!gcpServerlessEnabled(route)) return undefined
  const token = await source.token(gcpAudience(route))
  return { set: { authorization: `Bearer ${token}` }, setMulti: {}, remove: ['authorization'] }
}

/** The metadata server base URL from an option or `GCE_METADATA_HOST`. */
export function metadataBaseUrl(host: string | undefined): string {
  const value = host === undefined || host.trim() === '' ? GCE_METADATA_DEFAULT_HOST : host.trim()
  const withScheme = /^https?:\/\//i.test(value) ? value : `http://${value}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new TypeError(`GCE metadata host ${JSON.stringify(value)} is not host[:port]`)
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new TypeError(`GCE metadata host ${JSON.stringify(value)} is not host[:port]`)
  }
  return url.origin
}

export function createGcpIdentityTokenSource(options: GcpIdentityTokenSourceOptions = {}): GcpIdentityTokenSource {
  const env = options.env ?? process.env
  const metadataUrl = metadataBaseUrl(options.metadataHost ?? env['GCE_METADATA_HOST'])
  const doFetch = options.fetch ?? globalThis.fetch
  const now = options.now ?? Date.now
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const refreshBefore = options.refreshBeforeExpiryMs ?? DEFAULT_REFRESH_BEFORE_EXPIRY_MS
  const cache = new Map<string, CachedToken>()
  const inFlight = new Map<string, Promise<CachedToken>>()

  const fetchToken = async (audience: string): Promise<CachedToken> => {
    const url = `${metadataUrl}${GCP_IDENTITY_PATH}?${new URLSearchParams({ audience, format: 'full' }).toString()}`
    const started = now()
    let res: Response
    try {
      res = await doFetch(url, { headers: { 'Metadata-Flavor': 'Google' }, redirect: 'error', signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      if (isTimeout(err)) throw new GcpIdentityTokenError(audience, 'timeout', `no answer within ${timeoutMs} ms`, { cause: err })
      throw new GcpIdentityTokenError(audience, 'unreachable', `${metadataUrl} is unreachable (${errorText(err)})`, { cause: err })
    }
    let body: string
    try {
      body = await readLimited(res, MAX_BODY_BYTES)
    } catch (err) {
      if (isTimeout(err)) throw new GcpIdentityTokenError(audience, 'timeout', `no answer within ${timeoutMs} ms`, { cause: err })
      throw new GcpIdentityTokenError(audience, 'malformed', errorText(err), { cause: err })
    }
    if (res.status !== 200) {
      throw new GcpIdentityTokenError(audience, 'status', `it answered ${res.status}${summary(body)}`, { upstreamStatus: res.status })
    }
    const token = body.trim()
    const claims = jwtPayload(token)
    if (claims === undefined) throw new GcpIdentityTokenError(audience, 'malformed', 'the answer is not a JWT')
    const { exp, iat, aud } = claims
    if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new GcpIdentityTokenError(audience, 'malformed', 'the token has no exp')
    if (aud !== audience && !(Array.isArray(aud) && aud.includes(audience))) {
      throw new GcpIdentityTokenError(audience, 'malformed', `the token is for another audience (${JSON.stringify(aud)})`)
    }
    // Lifetime from the token's own clock, counted from when we asked: immune to local clock skew.
    const expiresAt = typeof iat === 'number' && Number.isFinite(iat) && iat < exp ? started + (exp - iat) * 1000 : exp * 1000
    const lifetime = expiresAt - started
    if (lifetime <= 0) throw new GcpIdentityTokenError(audience, 'malformed', 'the token has already expired')
    return { token, expiresAt, refreshAt: expiresAt - Math.min(refreshBefore, lifetime / 2) }
  }

  const refresh = (audience: string): Promise<CachedToken> => {
    let pending = inFlight.get(audience)
    if (pending === undefined) {
      pending = fetchToken(audience)
        .then((entry) => {
          cache.set(audience, entry)
          return entry
        })
        .finally(() => inFlight.delete(audience))
      inFlight.set(audience, pending)
    }
    return pending
  }

  return {
    metadataUrl,
    async token(audience: string): Promise<string> {
      if (audience === '') throw new TypeError('audience is empty')
      const cached = cache.get(audience)
      const t = now()
      if (cached !== undefined && t < cached.refreshAt) return cached.token
      try {
        return (await refresh(audience)).token
      } catch (err) {
        // A failed early refresh: the token we have is still good for a while.
        const still = cache.get(audience)
        if (still !== undefined && now() < still.expiresAt) return still.token
        cache.delete(audience)
        throw err
      }
    },
  }
}

/** The payload of a compact JWS, or undefined if `token` is not one. Not verified: we only read `exp`. */
export function jwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.')
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) return undefined
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'))
    return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

async function readLimited(res: Response, limit: number): Promise<string> {
  if (res.body === null) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength
    // Leaving the loop early cancels the body.
    if (size > limit) throw new Error(`the answer is larger than ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = err.cause
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? String(cause.code) : undefined
  return code !== undefined ? `${err.message}: ${code}` : err.message
}

function summary(body: string): string {
  const text = body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim()
  if (text === '') return ''
  return `: ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`
}
