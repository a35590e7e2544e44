/**
 * Every error Portcullis raises carries a stable code from one registry, `ERROR_CODES`: its
 * status (the HTTP status of the answer it leads to), a title and a one-line description, from
 * which docs/reference/errors.md is generated (`npm run gen`). Every error class extends
 * `CodedError`; callers branch on `code` (or `instanceof`), never on messages. What escapes a
 * handler is caught by its listener's boundary (src/shared/boundary.ts) and answered `500`.
 */

export interface ErrorCodeInfo {
  /** The HTTP status of the answer this error leads to (500 for failures of start-up or tools). */
  readonly status: number
  readonly title: string
  /** One line for docs/reference/errors.md: when the error happens and what follows. */
  readonly description: string
}

/** The area a code belongs to, for the generated reference: its group heading. */
export const ERROR_AREAS = {
  proxy: 'Proxy and listeners',
  internal: 'Internal API (between Portcullis services)',
  databroker: 'Databroker (record stores)',
  idp: 'Identity providers',
  token: 'Provider tokens (bearer, back-channel logout)',
  builtin: 'Built-in identity provider',
  client: 'Tunnel client (`portcullis tcp|udp`)',
  device: 'Device identity (WebAuthn pages, approval, enrollment links)',
  startup: 'Start-up and command line',
} as const

export const ERROR_CODES = {
  // Proxy and listeners
  ERR_ROUTE_NOT_FOUND: { area: 'proxy', status: 404, title: 'Not Found', description: 'No route matches the request’s host and path.' },
  ERR_ACCESS_DENIED: { area: 'proxy', status: 403, title: 'Forbidden', description: 'The route’s policy denies the request.' },
  ERR_BAD_REQUEST: { area: 'proxy', status: 400, title: 'Bad Request', description: 'The request is malformed (also: an internal API call whose body is not valid).' },
  ERR_METHOD_NOT_ALLOWED: { area: 'proxy', status: 405, title: 'Method Not Allowed', description: 'The endpoint does not take this method (the internal API takes only POST).' },
  ERR_EXT_AUTHZ_CALLER: {
    area: 'proxy',
    status: 401,
    title: 'Unauthorized',
    description: 'An ext_authz Check without the caller token (`authorization: Bearer` metadata, `ext_authz.caller_token_file`): answered with the gRPC status UNAUTHENTICATED and logged.',
  },
  ERR_HEADERS_TOO_LARGE: { area: 'proxy', status: 431, title: 'Request Header Fields Too Large', description: 'The request’s headers exceed the configured limit.' },
  ERR_REQUEST_TIMEOUT: { area: 'proxy', status: 408, title: 'Request Timeout', description: 'The client did not send the whole request in time.' },
  ERR_UPSTREAM_UNREACHABLE: { area: 'proxy', status: 503, title: 'Service Unavailable', description: 'No connection to the upstream could be made.' },
  ERR_UPSTREAM_BAD_RESPONSE: { area: 'proxy', status: 502, title: 'Bad Gateway', description: 'The upstream (or the Google metadata server, for an identity token) gave no usable answer.' },
  ERR_UPSTREAM_TIMEOUT: { area: 'proxy', status: 504, title: 'Gateway Timeout', description: 'The upstream did not answer in time.' },
  ERR_NO_HEALTHY_UPSTREAM: { area: 'proxy', status: 503, title: 'Service Unavailable', description: 'Every upstream of the route is marked unhealthy.' },
  ERR_TUNNEL_UPSTREAM_FAILED: {
    area: 'proxy',
    status: 502,
    title: 'Bad Gateway',
    description: 'A TCP or UDP tunnel’s upstream refused the connection or could not be reached (or the chained proxy of a `tcp+https` route refused the CONNECT or answered badly).',
  },
  ERR_CAPSULE_MALFORMED: { area: 'proxy', status: 400, title: 'Bad Request', description: 'A CONNECT-UDP capsule stream is malformed: a bad varint, a capsule over the length bound, or a stream that ends inside one.' },
  ERR_UPSTREAM_CREDENTIAL: { area: 'proxy', status: 502, title: 'Bad Gateway', description: 'A credential the route sends upstream (a Google Cloud identity token) could not be obtained.' },
  ERR_INTERNAL: {
    area: 'proxy',
    status: 500,
    title: 'Internal Server Error',
    description: 'Something failed inside a handler: the listener’s boundary answers 500 with the request id, logs the error with it and keeps serving.',
  },
  // Internal API
  ERR_UNAUTHENTICATED: { area: 'internal', status: 401, title: 'Unauthorized', description: 'An internal API call without a valid internal credential (derived from `shared_secret`).' },
  ERR_NOT_FOUND: { area: 'internal', status: 404, title: 'Not Found', description: 'An internal API call to a method the service does not have.' },
  ERR_BODY_TOO_LARGE: { area: 'internal', status: 413, title: 'Payload Too Large', description: 'An internal API request or answer body over 64 MiB.' },
  ERR_CANCELLED: { area: 'internal', status: 499, title: 'Client Closed Request', description: 'The caller went away before the internal API call was answered.' },
  ERR_BAD_ANSWER: { area: 'internal', status: 502, title: 'Bad Gateway', description: 'An internal service answered with something that is not the wire format (not JSON, no error code).' },
  ERR_INTERNAL_UNREACHABLE: {
    area: 'internal',
    status: 503,
    title: 'Service Unavailable',
    description: 'No internal service of the kind could be reached, or the connection broke before the answer; retried elsewhere when the call surely was not sent.',
  },
  // Databroker
  ERR_DATABROKER_CLOSED: { area: 'databroker', status: 503, title: 'Service Unavailable', description: 'The record store has been closed (the process is shutting down).' },
  ERR_DATABROKER_INVALID_ARGUMENT: { area: 'databroker', status: 400, title: 'Bad Request', description: 'A record store argument is outside its range (empty type or id, data that is not JSON, …).' },
  ERR_DATABROKER_SYNC_TOO_OLD: { area: 'databroker', status: 410, title: 'Gone', description: 'A sync cannot resume from the given version: deletions after it were pruned; the client starts over.' },
  ERR_DATABROKER_UNAVAILABLE: {
    area: 'databroker',
    status: 503,
    title: 'Service Unavailable',
    description: 'The storage behind the record store cannot be reached or failed; callers fail closed and retry later.',
  },
  ERR_STORAGE_OPEN: { area: 'databroker', status: 500, title: 'Internal Server Error', description: 'The SQLite database file could not be opened (locked, unreadable, corrupt or incompatible): start-up stops.' },
  // Identity providers
  ERR_IDP_DISCOVERY_FAILED: { area: 'idp', status: 502, title: 'Bad Gateway', description: 'The provider’s discovery document could not be read.' },
  ERR_IDP_STATE_MISMATCH: { area: 'idp', status: 400, title: 'Bad Request', description: 'The sign-in callback’s `state` does not match the sign-in that was started.' },
  ERR_IDP_NONCE_MISMATCH: { area: 'idp', status: 400, title: 'Bad Request', description: 'The ID token’s `nonce` does not match the sign-in that was started.' },
  ERR_IDP_ACCESS_DENIED: { area: 'idp', status: 401, title: 'Unauthorized', description: 'The provider refused the sign-in (`error=access_denied` and the like).' },
  ERR_IDP_EXCHANGE_FAILED: { area: 'idp', status: 400, title: 'Bad Request', description: 'The authorization code could not be exchanged for tokens, or the tokens were refused.' },
  ERR_IDP_REFRESH_FAILED: { area: 'idp', status: 400, title: 'Bad Request', description: 'A refresh failed: permanently (the session ends) or transiently (retried later).' },
  ERR_IDP_USERINFO_FAILED: { area: 'idp', status: 400, title: 'Bad Request', description: 'The provider’s UserInfo endpoint could not be read or its answer was refused.' },
  ERR_IDP_REVOKE_FAILED: { area: 'idp', status: 400, title: 'Bad Request', description: 'A token could not be revoked at the provider (sign-out goes on).' },
  ERR_DIRECTORY_API: { area: 'idp', status: 502, title: 'Bad Gateway', description: 'A directory API (Google, Entra ID, Okta, GitHub) answered an error or ran out of time during a directory sync; the last complete sync stays in effect (docs/directory.md).' },
  ERR_SCIM_REQUEST: { area: 'idp', status: 400, title: 'Bad Request', description: 'A SCIM request was refused; the answer is a SCIM error with its own status and `scimType` (docs/directory.md).' },
  ERR_GITHUB_API: { area: 'idp', status: 502, title: 'Bad Gateway', description: 'The GitHub REST API answered a non-2xx status (rate limits included); reported as one of the `ERR_IDP_*` codes.' },
  // Provider tokens
  ERR_TOKEN_MALFORMED: { area: 'token', status: 401, title: 'Unauthorized', description: 'Not a compact JWS (or an unusable opaque token): wrong shape, bad base64url or JSON, too long.' },
  ERR_TOKEN_ALGORITHM: { area: 'token', status: 401, title: 'Unauthorized', description: '`alg` missing, `none`, symmetric, unknown, or not offered by the provider.' },
  ERR_TOKEN_HEADER: { area: 'token', status: 401, title: 'Unauthorized', description: 'A refused header: `jku`, `jwk`, `x5u`, `x5c`, `crit`, `b64`, a bad `kid`, the wrong `typ`.' },
  ERR_TOKEN_UNKNOWN_KEY: { area: 'token', status: 401, title: 'Unauthorized', description: 'No key of the provider’s JWKS matches the token’s `kid` and `alg`.' },
  ERR_TOKEN_SIGNATURE: { area: 'token', status: 401, title: 'Unauthorized', description: 'The signature does not verify with the provider’s key.' },
  ERR_TOKEN_ISSUER: { area: 'token', status: 401, title: 'Unauthorized', description: '`iss` is not exactly the configured issuer.' },
  ERR_TOKEN_AUDIENCE: { area: 'token', status: 401, title: 'Unauthorized', description: '`aud` (or `azp`) names no accepted audience.' },
  ERR_TOKEN_EXPIRED: { area: 'token', status: 401, title: 'Unauthorized', description: '`exp` has passed, or (logout tokens) `iat` is too old.' },
  ERR_TOKEN_NOT_YET_VALID: { area: 'token', status: 401, title: 'Unauthorized', description: '`nbf` or `iat` is in the future.' },
  ERR_TOKEN_CLAIMS: { area: 'token', status: 401, title: 'Unauthorized', description: 'A required claim is missing or has the wrong type, or a forbidden one is present.' },
  ERR_TOKEN_REPLAYED: { area: 'token', status: 401, title: 'Unauthorized', description: 'A logout token whose `jti` was already accepted.' },
  ERR_TOKEN_REJECTED: { area: 'token', status: 401, title: 'Unauthorized', description: 'The provider’s UserInfo endpoint refused an opaque access token.' },
  ERR_TOKEN_AUDIENCE_NOT_CONFIGURED: { area: 'token', status: 401, title: 'Unauthorized', description: 'An access token JWT arrived but no allowed audiences are configured to check it against.' },
  ERR_TOKEN_UNVERIFIABLE: { area: 'token', status: 401, title: 'Unauthorized', description: 'The token cannot be checked with this provider (no UserInfo endpoint, signed UserInfo).' },
  ERR_PROVIDER_UNAVAILABLE: { area: 'token', status: 503, title: 'Service Unavailable', description: 'Discovery, JWKS or UserInfo could not be read: transient, worth a retry (503, not 401).' },
  // Built-in identity provider
  ERR_USERS_FILE_INVALID: { area: 'builtin', status: 500, title: 'Internal Server Error', description: 'The users file has problems (listed one a line): start-up stops; a reload keeps the previous users.' },
  ERR_PASSWORD_CHECKS_BUSY: { area: 'builtin', status: 503, title: 'Service Unavailable', description: 'Too many password checks are waiting: the sign-in is refused rather than queued.' },
  // Tunnel client
  ERR_TUNNEL_REFUSED: {
    area: 'client',
    status: 502,
    title: 'Bad Gateway',
    description: 'Portcullis could not be reached, or refused the tunnel (403, 404, 502, 503, 504, or still asking to sign in after signing in): the client prints the answer and closes that connection.',
  },
  // Device identity
  ERR_DEVICE_REFUSED: {
    area: 'device',
    status: 400,
    title: 'Bad Request',
    description: 'A device page or ceremony could not be completed: a tampered or expired link, a used enrollment link, a registration that does not verify or is not of the device type, an unknown or removed device.',
  },
  ERR_DEVICE_FORBIDDEN: {
    area: 'device',
    status: 403,
    title: 'Forbidden',
    description: 'A device request that is not this person’s to make: another site’s form, another session’s page, another user’s credential or enrollment link, a signature counter that went backwards (a cloned key), or a non-approver on the approvers’ page.',
  },
  // Start-up and command line
  ERR_SIGNING_KEY: { area: 'startup', status: 500, title: 'Internal Server Error', description: '`signing_key` cannot be used (no PEM block, an encrypted or unsupported key, RSA under 2048 bits, …): start-up stops.' },
  ERR_STARTUP_STOPPED: { area: 'startup', status: 503, title: 'Service Unavailable', description: 'A stop signal arrived during start-up: not a failure, the process exits 0.' },
  ERR_USAGE: { area: 'startup', status: 400, title: 'Bad Request', description: 'A command-line tool (`portcullis users`, `portcullis tcp`, …) was called wrongly: it prints the reason and exits non-zero.' },
} as const satisfies Record<`ERR_${string}`, ErrorCodeInfo & { readonly area: keyof typeof ERROR_AREAS }>

export type ErrorCode = keyof typeof ERROR_CODES

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value)
}

/** The HTTP status of the answer `code` leads to. */
export function statusOf(code: ErrorCode): number {
  return ERROR_CODES[code].status
}

/**
 * The base of every Portcullis error class: a stable `code` from `ERROR_CODES`. Subclasses
 * declare `code` narrowed to the codes they raise; the constructor is `Error`'s.
 */
export abstract class CodedError extends Error {
  abstract readonly code: ErrorCode
}

/** An error whose message is written for the person who made the request. */
export class PortcullisError extends CodedError {
  readonly code: ErrorCode
  readonly status: number
  /** Text safe to show to the person who made the request. */
  readonly publicMessage: string

  constructor(code: ErrorCode, publicMessage: string, options?: { cause?: unknown }) {
    super(publicMessage, options)
    this.name = 'PortcullisError'
    this.code = code
    this.status = ERROR_CODES[code].status
    this.publicMessage = publicMessage
  }
}

export function isPortcullisError(err: unknown): err is PortcullisError {
  return err instanceof PortcullisError
}
