/**
 * Discovery and JWKS of one provider, fetched lazily, cached, and re-read on an unknown `kid` or
 * with age, at most once per cooldown (hostile-input case: tokens / jwt; docs/provider-tokens.md).
 */
import { importJWK } from 'jose'
import type { CryptoKey, JWK } from 'jose'

import { DEFAULT_TIMEOUT_SECONDS, defaultFetch, isPlainObject, MAX_DOCUMENT_BYTES, parseJsonObject, readLimited, urlProblem } from './documents.js'
import { fail, isProviderTokenError, ProviderTokenError } from './errors.js'
import { ASYMMETRIC_ALGORITHMS } from './verify.js'
import type { IdpFetch } from '../oidc.js'

const MAX_JWKS_KEYS = 100
const DEFAULT_JWKS_COOLDOWN_SECONDS = 30
const DEFAULT_JWKS_MAX_AGE_SECONDS = 3600
/** Before any key set was loaded, a failed fetch is retried after this long (not the cooldown). */
const INITIAL_RETRY_MS = 5_000
/** A failed discovery is not retried sooner than this (a flood must not become a flood upstream). */
const DISCOVERY_RETRY_MS = 5_000

/** What verification needs from the provider's discovery document. */
interface ProviderMetadata {
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
