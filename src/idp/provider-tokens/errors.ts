/**
 * Why a provider token was refused (or could not be checked): one code per refusal, fixed
 * messages that never quote the token. Overview of the rules: index.ts and docs/provider-tokens.md.
 */
import { CodedError } from '../../shared/errors.js'

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

/** Throw a {@link ProviderTokenError}; for the verifiers of this folder. */
export function fail(code: ProviderTokenErrorCode, message: string, cause?: unknown): never {
  throw new ProviderTokenError(code, message, cause === undefined ? undefined : { cause })
}
