/**
 * Tokens an identity provider issued, verified by us: the bearer tokens of
 * `bearer_token_format: idp_identity_token | idp_access_token` (reference 7.6), and, through the
 * shared {@link ProviderKeySource} and {@link verifyProviderJwt}, back-channel logout tokens
 * (`backchannel-logout.ts`).
 *
 * The rules (security-tests 38, 39, 48; operator view in docs/provider-tokens.md):
 * - Only asymmetric signatures from the provider's own JWKS (`jwks_uri` of its discovery
 *   document). `none`, a missing `alg`, every `HS*` (an HMAC "signed" with the provider's public
 *   key is the classic confusion attack) and anything outside RS/PS/ES/EdDSA are refused before any
 *   key is looked at. Headers that name or carry their own key (`jku`, `jwk`, `x5u`, `x5c`) or ask
 *   for extensions (`crit`, `b64`) are refused, as is a path-like `kid`.
 * - `iss` must equal the configured issuer exactly; `aud` must contain the expected audience;
 *   `exp` and `iat` must be present; a 60 s clock skew is allowed on `exp`, `nbf` and `iat`.
 * - The JWKS is fetched lazily through the injected fetch (so tests and proxies see every request)
 *   and re-fetched when a token names a `kid` it lacks, at most once per 30 s whatever the request
 *   rate, and when the cached copy is older than an hour (so a key the provider withdrew stops
 *   being trusted).
 * - Provider endpoints must be HTTPS, except on loopback hosts.
 *
 * jose does the signature arithmetic (`compactVerify`); the policy around it (which header, which
 * key, which claims) is written out here so each refusal has its own code.
 */
import { createHash } from 'node:crypto'

import { compactVerify, importJWK } from 'jose'
import type { CryptoKey, JWK } from 'jose'

import type { IdpFetch } from './oidc.js'
import type { Claims } from './provider.js'
import { CodedError } from '../shared/errors.js'

// ---------------------------------------------------------------------------------------------
// Errors

export const PROVIDER_TOKEN_ERROR_CODES = [
  /** Not a compact JWS (or an unusable opaque token): wrong shape, bad base64url or JSON, too long. */
  'ERR_TOKEN_MALFORMED',
  /** `alg` missing, `none`, symmetric (`HS*`), unknown, or not offered by the provider. */
  'ERR_TOKEN_ALGORITHM',
  /** A refused header: `jku`, `jwk`, `x5u`, `x5c`, `crit`, `b64`, a bad `kid`, the wrong `typ`. */
  'ERR_TOKEN_HEADER',
  /** No key of the provider's JWKS matches the token's `kid` and `alg` (after at most one refetch). */
  'ERR_TOKEN_UNKNOWN_KEY',
  /** The signature does not verify with the provider's key. */
  'ERR_TOKEN_SIGNATURE',
  /** `iss` is not exactly the configured issuer. */
  'ERR_TOKEN_ISSUER',
  /** `aud` (or `azp`) names no accepted audience. */
  'ERR_TOKEN_AUDIENCE',
  /** `exp` has passed, or (logout tokens) `iat` is too old. */
  'ERR_TOKEN_EXPIRED',
  /** `nbf` or `iat` is in the future. */
  'ERR_TOKEN_NOT_YET_VALID',
  /** A required claim is missing or has the wrong type, or a forbidden one is present. */
  'ERR_TOKEN_CLAIMS',
  /** A logout token whose `jti` was already accepted. */
  'ERR_TOKEN_REPLAYED',
  /** The provider's UserInfo endpoint refused an opaque access token. */
  'ERR_TOKEN_REJECTED',
  /** An access token JWT arrived but no allowed audiences are configured to check it against. */
  'ERR_TOKEN_AUDIENCE_NOT_CONFIGURED',
  /** The token cannot be checked with this provider (no UserInfo endpoint, signed UserInfo). */
  'ERR_TOKEN_UNVERIFIABLE',
  /** Discovery, JWKS or UserInfo could not be read: transient, worth a retry (503, not 401). */
  'ERR_PROVIDER_UNAVAILABLE',
] as const

export type ProviderTokenErrorCode = (typeof PROVIDER_TOKEN_ERROR_CODES)[number]

/**
 * A refused token, or a provider we could not ask. `message` is fixed text written here: it never
 * quotes the token or values taken from it, so it is safe to log and to show.
 */
export class ProviderTokenError extends CodedError {
  readonly code: ProviderTokenErrorCode
  /** True only for `ERR_PROVIDER_UNAVAILABLE`: the token may be fine, the provider did not answer. */
  readonly transient: boolean

  constructor(code: ProviderTokenErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ProviderTokenError'
    this.code = code
    this.transient = code === 'ERR_PROVIDER_UNAVAILABLE'
  }
}

/** Whether `err` is a {@link ProviderTokenError}, optionally with the given code. */
export function isProviderTokenError(err: unknown, code?: ProviderTokenErrorCode): err is ProviderTokenError {
  return err instanceof ProviderTokenError && (code === undefined || err.code === code)
}

function fail(code: ProviderTokenErrorCode, message: string, cause?: unknown): never {
  throw new ProviderTokenError(code, message, cause === undefined ? undefined : { cause })
}

// ---------------------------------------------------------------------------------------------
// Limits and constants

/** Signature algorithms we ever accept: asymmetric only. */
export const ASYMMETRIC_ALGORITHMS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]

/** Longest token (JWT or opaque) we look at, in characters. */
export const MAX_TOKEN_LENGTH = 64 * 1024
/** Header members that bring their own key or extensions: a token carrying one is refused. */
const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'crit', 'b64', 'enc', 'zip'] as const
const MAX_KID_LENGTH = 256
const MAX_DOCUMENT_BYTES = 512 * 1024
const MAX_JWKS_KEYS = 100
const DEFAULT_SKEW_SECONDS = 60
const DEFAULT_JWKS_COOLDOWN_SECONDS = 30
const DEFAULT_JWKS_MAX_AGE_SECONDS = 3600
const DEFAULT_TIMEOUT_SECONDS = 10
/** Before any key set was loaded, a failed fetch is retried after this long (not the cooldown). */
const INITIAL_RETRY_MS = 5_000
/** A failed discovery is not retried sooner than this (a flood must not become a flood upstream). */
const DISCOVERY_RETRY_MS = 5_000
/** How long a UserInfo-verified opaque access token counts as verified. */
export const OPAQUE_ACCESS_TOKEN_TTL_MS = 5 * 60_000
const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout'

// ---------------------------------------------------------------------------------------------
// Transport

/** Whether a URL host (`URL.hostname`) is loopback: `localhost`, `127.0.0.0/8` or `::1`. */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '')
  if (host === 'localhost' || host === '[::1]') return true
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) // WHATWG URL normalised 127.1, 0x7f.1, ...
}

/** Why a provider URL is unacceptable (not HTTPS off loopback, credentials, ...), or undefined. */
function urlProblem(raw: string): string | undefined {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return 'is not a URL'
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    return 'must be https (plain http only on loopback hosts)'
  }
  if (url.username !== '' || url.password !== '') return 'must not carry credentials'
  if (url.hash !== '') return 'must not have a fragment'
  return undefined
}

const defaultFetch: IdpFetch = (url, init) => fetch(url, init as RequestInit)

/** Read a response body, refusing more than `max` bytes (a provider cannot exhaust our memory). */
async function readLimited(response: Response, max: number): Promise<Buffer> {
  const length = Number(response.headers.get('content-length') ?? NaN)
  if (Number.isFinite(length) && length > max) {
    await response.body?.cancel()
    throw new Error('response too large')
  }
  if (!response.body) return Buffer.alloc(0)
  const chunks: Buffer[] = []
  let total = 0
  const reader = response.body.getReader()
  for (;;) {
    const read = (await reader.read()) as { done: boolean; value?: Uint8Array }
    if (read.done || !read.value) break
    total += read.value.byteLength
    if (total > max) {
      await reader.cancel()
      throw new Error('response too large')
    }
    chunks.push(Buffer.from(read.value))
  }
  return Buffer.concat(chunks)
}

function parseJsonObject(bytes: Buffer | string): Record<string, unknown> | undefined {
  try {
    const text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    const value: unknown = JSON.parse(text)
    return isPlainObject(value) ? value : undefined
  } catch {
    return undefined
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

// ---------------------------------------------------------------------------------------------
// Provider metadata and keys

/** What verification needs from the provider's discovery document. */
export interface ProviderMetadata {
  issuer: string
  jwksUri: string
  userinfoEndpoint: string | undefined
  /** `id_token_signing_alg_values_supported` ∩ {@link ASYMMETRIC_ALGORITHMS} (`RS256` when absent). */
  idTokenSigningAlgs: readonly string[]
}

export interface ProviderKeySourceOptions {
  /**
   * The issuer identifier, exactly as the provider writes it in `iss` (a trailing `/` matters).
   * Discovery is read from `<issuer without trailing />/.well-known/openid-configuration`.
   */
  issuerUrl: string
  /** Every request to the provider goes through this (default: global fetch). */
  fetch?: IdpFetch
  /** Clock in epoch milliseconds (default `Date.now`); also drives the JWKS rate limit. */
  now?: () => number
  /** Minimum seconds between two JWKS fetches (unknown `kid`, age, failures); default 30. */
  jwksCooldownSeconds?: number
  /** Re-read the JWKS once the cached copy is older than this; default 3600. */
  jwksMaxAgeSeconds?: number
  /** Timeout per request to the provider; default 10 s. */
  timeoutSeconds?: number
}

/**
 * Discovery and JWKS of one provider, fetched lazily and cached. Share one per provider between
 * the bearer-token and logout-token verifiers so the rate limit covers both.
 */
export interface ProviderKeySource {
  /** The configured issuer identifier. */
  readonly issuer: string
  /** @throws {ProviderTokenError} `ERR_PROVIDER_UNAVAILABLE` */
  metadata(): Promise<ProviderMetadata>
  /**
   * The provider keys that may verify a token with this `alg` and `kid` (several only when the
   * token has no `kid`). A `kid` missing from the cached set causes one JWKS refetch, unless one
   * happened within the cooldown; a `kid` containing `/` never causes one.
   * @throws {ProviderTokenError} `ERR_PROVIDER_UNAVAILABLE`
   */
  keysFor(alg: string, kid: string | undefined): Promise<CryptoKey[]>
  /** Requests made so far (for tests and metrics). */
  readonly stats: { readonly discoveryFetches: number; readonly jwksFetches: number }
}

interface KeySet {
  keys: JWK[]
  kids: Set<string>
  fetchedAt: number
  /** Imported keys, per JWKS entry and algorithm. */
  imported: Map<JWK, Map<string, Promise<CryptoKey | undefined>>>
}

/** The issuer as configured, checked: a URL, HTTPS unless loopback, no query or fragment. */
function checkIssuer(issuerUrl: string): string {
  const problem = urlProblem(issuerUrl)
  if (problem !== undefined) throw new TypeError(`provider tokens: issuer URL ${JSON.stringify(issuerUrl)} ${problem}`)
  if (new URL(issuerUrl).search !== '') {
    throw new TypeError(`provider tokens: issuer URL ${JSON.stringify(issuerUrl)} must not have a query`)
  }
  return issuerUrl
}

export function createProviderKeySource(options: ProviderKeySourceOptions): ProviderKeySource {
  const issuer = checkIssuer(options.issuerUrl)
  const fetchImpl = options.fetch ?? defaultFetch
  const now = options.now ?? Date.now
  const cooldownMs = (options.jwksCooldownSeconds ?? DEFAULT_JWKS_COOLDOWN_SECONDS) * 1000
  const maxAgeMs = (options.jwksMaxAgeSeconds ?? DEFAULT_JWKS_MAX_AGE_SECONDS) * 1000
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000
  const discoveryUrl = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
  const stats = { discoveryFetches: 0, jwksFetches: 0 }

  let metadata: ProviderMetadata | undefined
  let metadataPending: Promise<ProviderMetadata> | undefined
  let metadataFailedAt = -Infinity

  let keySet: KeySet | undefined
  let keySetPending: Promise<KeySet | undefined> | undefined
  let lastJwksAttempt = -Infinity

  async function getDocument(url: string): Promise<Record<string, unknown>> {
    const response = await fetchImpl(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      body: undefined,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    })
    if (response.status !== 200) {
      await response.body?.cancel()
      throw new Error(`status ${response.status}`)
    }
    const doc = parseJsonObject(await readLimited(response, MAX_DOCUMENT_BYTES))
    if (!doc) throw new Error('not a JSON object')
    return doc
  }

  async function discover(): Promise<ProviderMetadata> {
    stats.discoveryFetches++
    let doc: Record<string, unknown>
    try {
      doc = await getDocument(discoveryUrl)
    } catch (cause) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider discovery document could not be read', cause)
    }
    if (doc.issuer !== issuer) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider discovery document names another issuer')
    }
    const jwksUri = doc.jwks_uri
    if (typeof jwksUri !== 'string' || urlProblem(jwksUri) !== undefined) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider jwks_uri is missing or not an allowed URL')
    }
    const userinfo = doc.userinfo_endpoint
    if (userinfo !== undefined && (typeof userinfo !== 'string' || urlProblem(userinfo) !== undefined)) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider userinfo_endpoint is not an allowed URL')
    }
    const advertised = doc.id_token_signing_alg_values_supported
    const algs = Array.isArray(advertised) ? advertised.filter((a): a is string => typeof a === 'string') : ['RS256']
    return {
      issuer,
      jwksUri,
      userinfoEndpoint: userinfo,
      idTokenSigningAlgs: ASYMMETRIC_ALGORITHMS.filter((a) => algs.includes(a)),
    }
  }

  function getMetadata(): Promise<ProviderMetadata> {
    if (metadata) return Promise.resolve(metadata)
    if (metadataPending) return metadataPending
    if (now() - metadataFailedAt < DISCOVERY_RETRY_MS) {
      return Promise.reject(
        new ProviderTokenError('ERR_PROVIDER_UNAVAILABLE', 'the identity provider discovery failed moments ago'),
      )
    }
    metadataPending = discover().then(
      (m) => {
        metadata = m
        metadataPending = undefined
        return m
      },
      (err: unknown) => {
        metadataFailedAt = now()
        metadataPending = undefined
        throw err
      },
    )
    return metadataPending
  }

  async function fetchKeySet(): Promise<KeySet> {
    const { jwksUri } = await getMetadata()
    stats.jwksFetches++
    const doc = await getDocument(jwksUri)
    if (!Array.isArray(doc.keys)) throw new Error('JWKS without a keys array')
    const keys: JWK[] = []
    const kids = new Set<string>()
    for (const entry of doc.keys.slice(0, MAX_JWKS_KEYS) as unknown[]) {
      if (!isPlainObject(entry) || typeof entry.kty !== 'string') continue
      const key = entry as JWK
      keys.push(key)
      if (typeof key.kid === 'string') kids.add(key.kid)
    }
    return { keys, kids, fetchedAt: now(), imported: new Map() }
  }

  /**
   * Fetch the JWKS unless one was tried within the cooldown (single flight: concurrent callers
   * share one request). Resolves to the new set, or undefined when nothing was fetched or the
   * fetch failed (the old set, if any, stays in use).
   */
  function refresh(): Promise<KeySet | undefined> {
    if (keySetPending) return keySetPending
    const gap = keySet ? cooldownMs : Math.min(cooldownMs, INITIAL_RETRY_MS)
    if (now() - lastJwksAttempt < gap) return Promise.resolve(undefined)
    lastJwksAttempt = now()
    keySetPending = fetchKeySet().then(
      (set) => {
        keySet = set
        keySetPending = undefined
        return set
      },
      (err: unknown) => {
        keySetPending = undefined
        lastJwksAttempt = now() // the cooldown counts from the failure, however long it took
        if (!keySet) throw err
        return undefined
      },
    )
    return keySetPending
  }

  async function currentSet(): Promise<KeySet> {
    if (keySet && now() - keySet.fetchedAt >= maxAgeMs) await refresh() // stale: keep it on failure
    if (keySet) return keySet
    try {
      await refresh()
    } catch (cause) {
      if (isProviderTokenError(cause)) throw cause
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider keys (JWKS) could not be read', cause)
    }
    if (!keySet) fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider keys (JWKS) could not be read moments ago')
    return keySet
  }

  async function keysFor(alg: string, kid: string | undefined): Promise<CryptoKey[]> {
    let set = await currentSet()
    if (kid !== undefined && !set.kids.has(kid) && !kid.includes('/')) {
      // Key rotation: the provider may have published a key since we last looked.
      const fresh = await refresh().catch(() => undefined)
      if (fresh) set = fresh
    }
    const matching = set.keys.filter((key) => usableFor(key, alg, kid))
    const imported = await Promise.all(matching.map((key) => importOnce(set, key, alg)))
    return imported.filter((k): k is CryptoKey => k !== undefined)
  }

  return {
    issuer,
    metadata: getMetadata,
    keysFor,
    stats,
  }
}

/** Whether a JWKS entry may verify a token signed with `alg` and naming `kid`. */
function usableFor(key: JWK, alg: string, kid: string | undefined): boolean {
  if (kid !== undefined && key.kid !== kid) return false
  if (key.use !== undefined && key.use !== 'sig') return false
  if (key.key_ops !== undefined && !(Array.isArray(key.key_ops) && key.key_ops.includes('verify'))) return false
  if (key.alg !== undefined && key.alg !== alg) return false
  // A published private key (or an HMAC secret) means anyone can sign: never use such an entry.
  if (key.d !== undefined || key.k !== undefined || key.kty === 'oct') return false
  switch (alg) {
    case 'RS256':
    case 'RS384':
    case 'RS512':
    case 'PS256':
    case 'PS384':
    case 'PS512':
      return key.kty === 'RSA'
    case 'ES256':
      return key.kty === 'EC' && key.crv === 'P-256'
    case 'ES384':
      return key.kty === 'EC' && key.crv === 'P-384'
    case 'ES512':
      return key.kty === 'EC' && key.crv === 'P-521'
    case 'EdDSA':
    case 'Ed25519':
      return key.kty === 'OKP' && key.crv === 'Ed25519'
    default:
      return false
  }
}

/** Import only the public members, once per key set and algorithm; undefined when unusable. */
function importOnce(set: KeySet, key: JWK, alg: string): Promise<CryptoKey | undefined> {
  let byAlg = set.imported.get(key)
  if (!byAlg) {
    byAlg = new Map()
    set.imported.set(key, byAlg)
  }
  let pending = byAlg.get(alg)
  if (!pending) {
    const { n, e, crv, x, y } = key
    const publicJwk: JWK = { kty: key.kty as string }
    if (n !== undefined) publicJwk.n = n
    if (e !== undefined) publicJwk.e = e
    if (crv !== undefined) publicJwk.crv = crv
    if (x !== undefined) publicJwk.x = x
    if (y !== undefined) publicJwk.y = y
    pending = importJWK(publicJwk, alg).then(
      (k) => (k instanceof Uint8Array ? undefined : k),
      () => undefined,
    )
    byAlg.set(alg, pending)
  }
  return pending
}

// ---------------------------------------------------------------------------------------------
// JWT verification (shared with backchannel-logout.ts)

/** The parts of a compact JWS and its decoded protected header. */
interface CompactJws {
  header: Record<string, unknown>
}

const B64URL = /^[A-Za-z0-9_-]+$/
/** A signature segment may be empty (then it never verifies). */
const SIGNATURE64 = /^[A-Za-z0-9_-]*$/

function decodeSegment(segment: string): Record<string, unknown> | undefined {
  if (!B64URL.test(segment)) return undefined
  return parseJsonObject(Buffer.from(segment, 'base64url'))
}

function parseCompact(token: string): CompactJws {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
    fail('ERR_TOKEN_MALFORMED', 'the token is empty or too long')
  }
  const parts = token.split('.')
  // An empty signature passes this shape check so that `alg: none` is refused as such (by
  // checkHeader); no signature ever verifies empty.
  const [header64 = '', payload64 = '', signature64 = ''] = parts
  if (parts.length !== 3 || !B64URL.test(header64) || !B64URL.test(payload64) || !SIGNATURE64.test(signature64)) {
    fail('ERR_TOKEN_MALFORMED', 'the token is not a compact JWT (three base64url parts)')
  }
  const header = decodeSegment(header64)
  if (!header) fail('ERR_TOKEN_MALFORMED', 'the token header is not a JSON object')
  return { header }
}

/** `typ` as compared: lower case, without an `application/` prefix (RFC 7515 4.1.9). */
function normaliseTyp(typ: string): string {
  const lower = typ.toLowerCase()
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower
}

/** What {@link verifyProviderJwt} accepts; each verifier fills it for its kind of token. */
export interface JwtPolicy {
  /** Accepted `typ` header values, normalised (`jwt`, `at+jwt`, `logout+jwt`); an absent `typ` is accepted. */
  typ: readonly string[]
  /** Restrict `alg` to the provider's `id_token_signing_alg_values_supported` too. */
  idTokenAlgorithms: boolean
  /** `aud` must contain one of these. */
  audiences: readonly string[]
  /** When `aud` has several values, an `azp` present must be one of `audiences` (OIDC Core 3.1.3.7). */
  checkAzp: boolean
  /** `exp` must be present (it is checked whenever present). */
  requireExp: boolean
  /** `sub` must be a non-empty string. */
  requireSub: boolean
  /** When set, `iat` may be at most this many seconds (plus skew) old. */
  maxAgeSeconds?: number
  clockSkewSeconds: number
  /** Epoch milliseconds. */
  now: number
}

export interface VerifiedJwt {
  header: Readonly<Record<string, unknown>>
  claims: Record<string, unknown>
}

/**
 * Check a header without any key or network: algorithm, forbidden members, `kid`, `typ`.
 * @throws {ProviderTokenError}
 */
function checkHeader(header: Record<string, unknown>, policy: JwtPolicy): { alg: string; kid: string | undefined } {
  const alg = header.alg
  if (alg === undefined) fail('ERR_TOKEN_ALGORITHM', 'the token header has no alg')
  if (typeof alg !== 'string') fail('ERR_TOKEN_ALGORITHM', 'the token header alg is not a string')
  if (alg.toLowerCase() === 'none') fail('ERR_TOKEN_ALGORITHM', 'unsigned tokens (alg none) are refused')
  if (/^hs/i.test(alg)) fail('ERR_TOKEN_ALGORITHM', 'symmetric (HMAC) signatures are refused: only the provider key may sign')
  if (!ASYMMETRIC_ALGORITHMS.includes(alg)) fail('ERR_TOKEN_ALGORITHM', 'the token signature algorithm is not accepted')
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) fail('ERR_TOKEN_HEADER', `tokens with a "${name}" header are refused`)
  }
  if (header.cty !== undefined) fail('ERR_TOKEN_HEADER', 'nested tokens (cty header) are refused')
  const kid = header.kid
  if (kid !== undefined) {
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_KID_LENGTH) {
      fail('ERR_TOKEN_HEADER', 'the token kid is not a short string')
    }
    // A kid is only ever compared with the JWKS, but path-like ones are refused outright
    // (security-tests 38). "/" alone is tolerated for exact JWKS matches (AWS Cognito kids are
    // standard base64); keysFor never refetches the JWKS for such a kid.
    // eslint-disable-next-line no-control-regex
    if (kid.includes('..') || kid.includes('\\') || /[\u0000-\u001f\u007f]/.test(kid)) {
      fail('ERR_TOKEN_HEADER', 'the token kid contains path or control characters')
    }
  }
  const typ = header.typ
  if (typ !== undefined && (typeof typ !== 'string' || !policy.typ.includes(normaliseTyp(typ)))) {
    fail('ERR_TOKEN_HEADER', 'the token type (typ header) is not accepted here')
  }
  return { alg, kid: kid }
}

function numericClaim(claims: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const value = claims[name]
  if (value === undefined) {
    if (required) fail('ERR_TOKEN_CLAIMS', `the token has no ${name} claim`)
    return undefined
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) fail('ERR_TOKEN_CLAIMS', `the token ${name} claim is not a number`)
  return value
}

/** Issuer, audience and time checks on verified claims. */
function checkClaims(claims: Record<string, unknown>, issuer: string, policy: JwtPolicy): void {
  if (typeof claims.iss !== 'string') fail('ERR_TOKEN_CLAIMS', 'the token has no iss claim')
  if (claims.iss !== issuer) fail('ERR_TOKEN_ISSUER', 'the token was issued by another issuer')

  const aud = claims.aud
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined
  if (!audiences || audiences.length === 0 || !audiences.every((a) => typeof a === 'string')) {
    fail('ERR_TOKEN_CLAIMS', 'the token has no aud claim')
  }
  if (!audiences.some((a) => policy.audiences.includes(a))) {
    fail('ERR_TOKEN_AUDIENCE', 'the token is meant for another audience')
  }
  if (policy.checkAzp && new Set(audiences).size > 1 && claims.azp !== undefined) {
    if (typeof claims.azp !== 'string' || !policy.audiences.includes(claims.azp)) {
      fail('ERR_TOKEN_AUDIENCE', 'the token was issued to another client (azp)')
    }
  }

  const now = policy.now / 1000
  const skew = policy.clockSkewSeconds
  const exp = numericClaim(claims, 'exp', policy.requireExp)
  const iat = numericClaim(claims, 'iat', true) ?? 0
  const nbf = numericClaim(claims, 'nbf', false)
  if (exp !== undefined && exp <= now - skew) fail('ERR_TOKEN_EXPIRED', 'the token has expired')
  if (nbf !== undefined && nbf > now + skew) fail('ERR_TOKEN_NOT_YET_VALID', 'the token is not valid yet (nbf)')
  if (iat > now + skew) fail('ERR_TOKEN_NOT_YET_VALID', 'the token was issued in the future (iat)')
  if (policy.maxAgeSeconds !== undefined && now - iat > policy.maxAgeSeconds + skew) {
    fail('ERR_TOKEN_EXPIRED', 'the token was issued too long ago (iat)')
  }
  if (policy.requireSub && (typeof claims.sub !== 'string' || claims.sub === '')) {
    fail('ERR_TOKEN_CLAIMS', 'the token has no sub claim')
  }
}

/**
 * Verify a compact JWS issued by `keys.issuer`: header rules, signature with a provider key, then
 * issuer, audience and time claims per `policy`. Cheap refusals (header) happen before any
 * request to the provider.
 * @throws {ProviderTokenError}
 */
export async function verifyProviderJwt(keys: ProviderKeySource, token: string, policy: JwtPolicy): Promise<VerifiedJwt> {
  const { header } = parseCompact(token)
  const { alg, kid } = checkHeader(header, policy)
  if (policy.idTokenAlgorithms) {
    const meta = await keys.metadata()
    if (!meta.idTokenSigningAlgs.includes(alg)) {
      fail('ERR_TOKEN_ALGORITHM', 'the provider does not sign ID tokens with this algorithm')
    }
  }
  const candidates = await keys.keysFor(alg, kid)
  if (candidates.length === 0) fail('ERR_TOKEN_UNKNOWN_KEY', 'no key of the identity provider matches the token (kid, alg)')

  let payload: Uint8Array | undefined
  for (const key of candidates.slice(0, 10)) {
    try {
      payload = (await compactVerify(token, key, { algorithms: [alg] })).payload
      break
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED') continue
      if (code === 'ERR_JWS_INVALID') fail('ERR_TOKEN_MALFORMED', 'the token is not a valid JWS', err)
      if (code === 'ERR_JOSE_ALG_NOT_ALLOWED' || code === 'ERR_JOSE_NOT_SUPPORTED') {
        fail('ERR_TOKEN_ALGORITHM', 'the token signature algorithm is not accepted', err)
      }
      fail('ERR_TOKEN_SIGNATURE', 'the token signature could not be verified', err)
    }
  }
  if (!payload) fail('ERR_TOKEN_SIGNATURE', 'the token signature does not verify with the identity provider key')
  const claims = parseJsonObject(Buffer.from(payload))
  if (!claims) fail('ERR_TOKEN_MALFORMED', 'the token payload is not a JSON object')
  checkClaims(claims, keys.issuer, policy)
  return { header, claims }
}

// ---------------------------------------------------------------------------------------------
// Cache

export interface TokenCacheOptions {
  /** Most entries kept; the least recently used goes first. Default 1000. */
  maxEntries?: number
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
}

/**
 * A bounded LRU of verification results with expiry. Entries are keyed by SHA-256 over the whole
 * token and a context (the kind of token and the accepted audiences), never by a prefix, a claim
 * or `kid`: a result is only ever reused for the very same token checked the very same way
 * (security-tests 48). Raw tokens are not kept.
 */
export class TokenCache<T> {
  readonly maxEntries: number
  private readonly now: () => number
  private readonly entries = new Map<string, { value: T; expiresAt: number }>()

  constructor(options: TokenCacheOptions = {}) {
    const max = options.maxEntries ?? 1000
    if (!Number.isInteger(max) || max < 1) throw new TypeError('TokenCache: maxEntries must be a positive integer')
    this.maxEntries = max
    this.now = options.now ?? Date.now
  }

  /** The cache key: SHA-256 of the length-prefixed context and the token. */
  static keyOf(token: string, context = ''): string {
    return createHash('sha256').update(`${context.length}:${context}\n`).update(token).digest('base64url')
  }

  get(token: string, context = ''): T | undefined {
    const key = TokenCache.keyOf(token, context)
    const entry = this.entries.get(key)
    if (!entry) return undefined
    this.entries.delete(key)
    if (entry.expiresAt <= this.now()) return undefined
    this.entries.set(key, entry) // most recently used last
    return entry.value
  }

  /** Keep `value` until `expiresAt` (epoch ms); an already expired value is not stored. */
  set(token: string, value: T, expiresAt: number, context = ''): void {
    if (!(expiresAt > this.now())) return
    const key = TokenCache.keyOf(token, context)
    this.entries.delete(key)
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      this.entries.delete(oldest.value)
    }
    this.entries.set(key, { value, expiresAt })
  }

  delete(token: string, context = ''): void {
    this.entries.delete(TokenCache.keyOf(token, context))
  }

  clear(): void {
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }
}

// ---------------------------------------------------------------------------------------------
// Bearer-token verifier

/** A token that verified: who it is about, its claims, and until when the result holds. */
export interface VerifiedProviderToken {
  subject: string
  claims: Claims
  /** Epoch milliseconds: the token's `exp`, or now + 5 min for a UserInfo-checked opaque token. */
  expiresAt: number
}

export interface ProviderTokenVerifierOptions extends ProviderKeySourceOptions {
  /** The OAuth client id: the default audience of ID tokens. */
  clientId: string
  /** Allowed clock skew on `exp`, `nbf` and `iat`, in seconds; default 60. */
  clockSkewSeconds?: number
  /** Reuse a key source (shared with the logout verifier); its issuer must be `issuerUrl`. */
  keys?: ProviderKeySource
  /** Cache of verified JWTs; default a 1000-entry {@link TokenCache}; `false` disables it. */
  cache?: TokenCache<VerifiedProviderToken> | false
}

export interface ProviderTokenVerifier {
  /**
   * `bearer_token_format: idp_identity_token`. `aud` must contain the client id, or one of
   * `allowedAudiences` when that is non-empty (ID tokens the provider issued to other clients).
   * @throws {ProviderTokenError}
   */
  verifyIdentityToken(token: string, allowedAudiences?: readonly string[]): Promise<VerifiedProviderToken>
  /**
   * `bearer_token_format: idp_access_token`. A JWT access token (`typ` `at+jwt` or `JWT`) is
   * verified like an ID token with `aud` checked against `allowedAudiences`, which must be
   * non-empty; any other token is sent to the provider's UserInfo endpoint, and counts as valid
   * for five minutes when that answers 200 with a `sub` (nothing is cached for it here).
   * @throws {ProviderTokenError}
   */
  verifyAccessToken(token: string, allowedAudiences?: readonly string[]): Promise<VerifiedProviderToken>
  /** The key source, to share with the back-channel logout verifier of the same provider. */
  readonly keys: ProviderKeySource
}

/** RFC 6750 `b64token`: what an opaque bearer token may contain. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** Whether a bearer token is a JWT access token (three parts, JOSE header with `typ` at+jwt or JWT). */
export function isJwtAccessToken(token: string): boolean {
  const parts = token.split('.')
  if (parts.length !== 3 || !B64URL.test(parts[1] ?? '') || !SIGNATURE64.test(parts[2] ?? '')) return false
  const header = decodeSegment(parts[0] ?? '')
  const typ = header?.typ
  return typeof typ === 'string' && ['at+jwt', 'jwt'].includes(normaliseTyp(typ))
}

export function createProviderTokenVerifier(options: ProviderTokenVerifierOptions): ProviderTokenVerifier {
  if (typeof options.clientId !== 'string' || options.clientId === '') {
    throw new TypeError('provider tokens: clientId is required')
  }
  const keys = options.keys ?? createProviderKeySource(options)
  if (keys.issuer !== options.issuerUrl) throw new TypeError('provider tokens: the shared key source has another issuer')
  const now = options.now ?? Date.now
  const skew = options.clockSkewSeconds ?? DEFAULT_SKEW_SECONDS
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000
  const fetchImpl = options.fetch ?? defaultFetch
  const cache = options.cache === false ? undefined : (options.cache ?? new TokenCache<VerifiedProviderToken>({ now }))

  async function verifyJwt(
    kind: 'id' | 'at',
    token: string,
    audiences: readonly string[],
  ): Promise<VerifiedProviderToken> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      fail('ERR_TOKEN_MALFORMED', 'the token is empty or too long')
    }
    // Everything the outcome depends on besides the token: a cache shared between verifiers (other
    // issuers, other clients) or routes (other audiences) can never hand one's result to another.
    const context = JSON.stringify([kind, keys.issuer, options.clientId, [...audiences].sort()])
    const cached = cache?.get(token, context)
    if (cached) return structuredClone(cached)
    const { claims } = await verifyProviderJwt(keys, token, {
      typ: kind === 'id' ? ['jwt'] : ['at+jwt', 'jwt'],
      idTokenAlgorithms: kind === 'id',
      audiences,
      checkAzp: kind === 'id',
      requireExp: true,
      requireSub: true,
      clockSkewSeconds: skew,
      now: now(),
    })
    if (kind === 'id' && isPlainObject(claims.events) && Object.hasOwn(claims.events, BACKCHANNEL_LOGOUT_EVENT)) {
      fail('ERR_TOKEN_CLAIMS', 'a logout token is not an ID token')
    }
    const subject = claims.sub as string
    const result: VerifiedProviderToken = { subject, claims: { ...claims, sub: subject }, expiresAt: (claims.exp as number) * 1000 }
    cache?.set(token, structuredClone(result), result.expiresAt, context)
    return result
  }

  async function viaUserInfo(token: string): Promise<VerifiedProviderToken> {
    if (token.length > MAX_TOKEN_LENGTH || !B64TOKEN.test(token)) {
      fail('ERR_TOKEN_MALFORMED', 'the access token contains characters a bearer token cannot have')
    }
    const { userinfoEndpoint } = await keys.metadata()
    if (userinfoEndpoint === undefined) {
      fail('ERR_TOKEN_UNVERIFIABLE', 'the identity provider has no UserInfo endpoint to check opaque access tokens with')
    }
    let response: Response
    try {
      response = await fetchImpl(userinfoEndpoint, {
        method: 'GET',
        headers: { accept: 'application/json', authorization: `Bearer ${token}` },
        body: undefined,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (cause) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider UserInfo endpoint could not be reached', cause)
    }
    if (response.status === 400 || response.status === 401 || response.status === 403) {
      await response.body?.cancel()
      fail('ERR_TOKEN_REJECTED', 'the identity provider did not accept the access token')
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider UserInfo endpoint failed')
    }
    const type = (response.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
    if (type !== 'application/json') {
      await response.body?.cancel()
      fail('ERR_TOKEN_UNVERIFIABLE', 'the identity provider UserInfo response is not plain JSON (signed UserInfo is not supported)')
    }
    let body: Buffer
    try {
      body = await readLimited(response, MAX_DOCUMENT_BYTES)
    } catch (cause) {
      fail('ERR_PROVIDER_UNAVAILABLE', 'the identity provider UserInfo response could not be read', cause)
    }
    const info = parseJsonObject(body)
    if (!info || typeof info.sub !== 'string' || info.sub === '') {
      fail('ERR_TOKEN_REJECTED', 'the identity provider UserInfo response has no subject')
    }
    return { subject: info.sub, claims: { ...info, sub: info.sub }, expiresAt: now() + OPAQUE_ACCESS_TOKEN_TTL_MS }
  }

  return {
    keys,

    verifyIdentityToken(token, allowedAudiences) {
      const audiences = allowedAudiences && allowedAudiences.length > 0 ? allowedAudiences : [options.clientId]
      return verifyJwt('id', token, audiences)
    },

    async verifyAccessToken(token, allowedAudiences) {
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
        fail('ERR_TOKEN_MALFORMED', 'the token is empty or too long')
      }
      if (!isJwtAccessToken(token)) return viaUserInfo(token)
      if (!allowedAudiences || allowedAudiences.length === 0) {
        fail(
          'ERR_TOKEN_AUDIENCE_NOT_CONFIGURED',
          'a JWT access token needs idp_access_token_allowed_audiences to be configured; none is',
        )
      }
      return verifyJwt('at', token, allowedAudiences)
    },
  }
}
