/**
 * The typed settings services read (sign-in, authorize, internal services, observability), made
 * from the normalised keys once per load. Rules the descriptor kinds cannot express are checked
 * here, at their key paths, so that no service has to validate (or silently ignore) a value at
 * run time. Defaults are Pomerium's (docs/reference/config.md).
 */
import { loadSigningKeys, SigningKeyError } from '../shared/signing-keys.js'
import { isRecord } from './coerce.js'
import { parseIssuerFormat } from './identity-settings.js'
import { joinPath } from './issues.js'
import type { LoadContext } from './normalise.js'
import { storageChoice } from './storage-choice.js'
import { readTracing } from './tracing.js'
import type { BuiltinIdpSettings, Config, CookieSettings, IdpClientSettings, MetricsSettings, OutlierDetection, RouteConfig } from './types.js'

/** `builtin_idp_address` when unset. */
export const DEFAULT_BUILTIN_IDP_ADDRESS = '127.0.0.1:8081'
/** Envoy's `healthy_panic_threshold` default (percent). */
export const DEFAULT_HEALTHY_PANIC_THRESHOLD_PERCENT = 50
/** Envoy's outlier detection defaults, counting gateway failures only. */
export const DEFAULT_OUTLIER_DETECTION: OutlierDetection = {
  consecutiveFailures: 5,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  count5xx: false,
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined
}

/** Non-empty strings of a list ([] when unset). */
function nonEmptyStrings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : []
}

function stringMap(v: unknown): Record<string, string> | undefined {
  if (!isRecord(v)) return undefined
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]))
}

/** The internal URL, else the URL list, else the single URL. */
function serviceUrls(raw: Readonly<Record<string, unknown>>, service: string): string[] {
  const internal = str(raw[`${service}_internal_service_url`])
  if (internal !== undefined) return [internal]
  const many = nonEmptyStrings(raw[`${service}_service_urls`])
  if (many.length > 0) return many
  const one = str(raw[`${service}_service_url`])
  return one === undefined ? [] : [one]
}

/** `metrics_basic_auth`: base64 (no whitespace) of `user:password` with a non-empty user. */
export function metricsBasicAuthProblem(value: string): string | undefined {
  if (!/^[A-Za-z0-9+/=_-]+$/.test(value) || Buffer.from(value, 'base64').toString('utf8').indexOf(':') <= 0) return 'expected base64 of user:password'
  return undefined
}

function readMetrics(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): MetricsSettings {
  const at = (key: string): string => (raw[`${key}_file`] !== undefined ? `${key}_file` : key)
  const metrics: MetricsSettings = {
    address: str(raw['metrics_address']),
    basicAuth: str(raw['metrics_basic_auth']),
    certificate: str(raw['metrics_certificate']),
    certificateKey: str(raw['metrics_certificate_key']),
    clientCa: str(raw['metrics_client_ca']),
  }
  if ((metrics.certificate === undefined) !== (metrics.certificateKey === undefined)) {
    const present = metrics.certificate === undefined ? 'metrics_certificate_key' : 'metrics_certificate'
    const missing = metrics.certificate === undefined ? 'metrics_certificate' : 'metrics_certificate_key'
    ctx.issues.error(at(present), undefined, `${missing} (or ${missing}_file) is required together with ${present}`)
  }
  if (metrics.clientCa !== undefined && metrics.certificate === undefined) {
    ctx.issues.error(at('metrics_client_ca'), undefined, 'needs metrics_certificate and metrics_certificate_key (mTLS is TLS)')
  }
  return metrics
}

/**
 * `signing_key`: every PEM block an unencrypted private key of a supported type (EC P-256/384/521,
 * RSA of 2048 bits or more, Ed25519), read exactly as the authorize service reads it.
 */
function readSigningKey(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): string | undefined {
  const pem = str(raw['signing_key'])
  if (pem === undefined) return undefined
  try {
    // The secret only matters when no key is given; none is derived here.
    loadSigningKeys(pem, Buffer.alloc(32))
  } catch (err) {
    if (!(err instanceof SigningKeyError)) throw err
    ctx.issues.error(raw['signing_key_file'] !== undefined ? 'signing_key_file' : 'signing_key', undefined, err.message.replace(/^signing_key: /, ''))
  }
  return pem
}

function readBuiltinIdp(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): BuiltinIdpSettings {
  const address = str(raw['builtin_idp_address']) ?? DEFAULT_BUILTIN_IDP_ADDRESS
  const m = /^(.*):(\d+)$/.exec(address)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) ctx.issues.error('builtin_idp_address', address, 'expected host:port, e.g. 127.0.0.1:8081')
  return {
    usersFile: str(raw['builtin_idp_users_file']),
    address,
    host: (m?.[1] ?? '').replace(/^\[|\]$/g, ''),
    port: Number.isFinite(port) ? port : 0,
  }
}

/** The typed global fields of `Config` the services read (everything but listeners, routes and `raw`). */
export type ServiceSettings = Pick<
  Config,
  | 'authenticateServiceUrl'
  | 'authenticateInternalServiceUrl'
  | 'signoutRedirectUrl'
  | 'cookie'
  | 'idp'
  | 'builtinIdp'
  | 'programmaticRedirectDomainWhitelist'
  | 'signingKey'
  | 'sharedSecret'
  | 'cookieSecret'
  | 'jwtIssuerFormat'
  | 'jwtGroupsFilter'
  | 'databrokerServiceUrls'
  | 'authorizeServiceUrls'
  | 'grpcAddress'
  | 'grpcInsecure'
  | 'grpcClientTimeoutMs'
  | 'certificateAuthority'
  | 'overrideCertificateName'
  | 'storage'
  | 'metrics'
  | 'healthCheckAddr'
  | 'tracing'
>

/**
 * Reads (and checks) the service settings from the normalised global keys. `authorize_log_fields`,
 * `jwt_claims_headers`, `runtime_flags` and `downstream_mtls` have their own checks in the loader.
 */
export function readServiceSettings(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): ServiceSettings {
  const sameSite = str(raw['cookie_same_site'])?.toLowerCase()
  const cookie: CookieSettings = {
    name: str(raw['cookie_name']) ?? '_pomerium',
    domain: str(raw['cookie_domain']),
    httpOnly: raw['cookie_http_only'] !== false,
    expireMs: typeof raw['cookie_expire'] === 'number' ? raw['cookie_expire'] : 14 * 3_600_000,
    sameSite: sameSite === 'strict' || sameSite === 'lax' || sameSite === 'none' ? sameSite : undefined,
  }
  const idp: IdpClientSettings = {
    provider: str(raw['idp_provider']),
    providerUrl: str(raw['idp_provider_url']),
    clientId: str(raw['idp_client_id']),
    clientSecret: str(raw['idp_client_secret']),
    scopes: strings(raw['idp_scopes']),
    requestParams: stringMap(raw['idp_request_params']),
  }
  const timeout = raw['grpc_client_timeout']
  return {
    authenticateServiceUrl: str(raw['authenticate_service_url']) ?? 'https://authenticate.pomerium.app',
    authenticateInternalServiceUrl: str(raw['authenticate_internal_service_url']),
    signoutRedirectUrl: str(raw['signout_redirect_url']),
    cookie,
    idp,
    builtinIdp: readBuiltinIdp(raw, ctx),
    programmaticRedirectDomainWhitelist: strings(raw['programmatic_redirect_domain_whitelist']) ?? ['localhost'],
    signingKey: readSigningKey(raw, ctx),
    sharedSecret: str(raw['shared_secret']),
    cookieSecret: str(raw['cookie_secret']),
    jwtIssuerFormat: parseIssuerFormat(raw['jwt_issuer_format']) ?? 'hostOnly',
    jwtGroupsFilter: nonEmptyStrings(raw['jwt_groups_filter']),
    databrokerServiceUrls: serviceUrls(raw, 'databroker'),
    authorizeServiceUrls: serviceUrls(raw, 'authorize'),
    grpcAddress: str(raw['grpc_address']),
    grpcInsecure: typeof raw['grpc_insecure'] === 'boolean' ? raw['grpc_insecure'] : undefined,
    grpcClientTimeoutMs: typeof timeout === 'number' && timeout > 0 ? timeout : 0,
    certificateAuthority: str(raw['certificate_authority']),
    overrideCertificateName: str(raw['override_certificate_name']),
    storage: storageChoice(raw),
    metrics: readMetrics(raw, ctx),
    healthCheckAddr: str(raw['health_check_addr']) ?? '127.0.0.1:28080',
    tracing: readTracing(raw, (path, value, message) => ctx.issues.error(path, value, message)),
  }
}

/** Envoy durations as written in `outlier_detection`: `30s`, `0.5s`, `100ms`, `1m`; a number is seconds. */
function envoyDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined
  if (typeof value !== 'string') return undefined
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value.trim())
  if (!m) return undefined
  const n = Number(m[1])
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000
}

/** A route's `outlier_detection` over Envoy's defaults; problems are reported at `path`. */
export function readOutlierDetection(value: unknown, path: string, ctx: LoadContext): OutlierDetection {
  if (value === undefined) return DEFAULT_OUTLIER_DETECTION
  if (!isRecord(value)) {
    ctx.issues.error(path, value, 'expected a mapping of Envoy outlier detection fields (consecutive_5xx, base_ejection_time, ...)')
    return DEFAULT_OUTLIER_DETECTION
  }
  const count = (key: string): number | undefined => {
    const n = value[key]
    if (n === undefined || n === null) return undefined
    if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) return n
    ctx.issues.error(joinPath(path, key), n, 'expected a non-negative integer')
    return undefined
  }
  const duration = (key: string): number | undefined => {
    const d = value[key]
    if (d === undefined || d === null) return undefined
    const ms = envoyDuration(d)
    if (ms === undefined) ctx.issues.error(joinPath(path, key), d, 'expected a duration such as 30s, 0.5s, 100ms or 1m')
    return ms
  }
  const consecutive5xx = count('consecutive_5xx')
  const gateway = count('consecutive_gateway_failure')
  return {
    consecutiveFailures: consecutive5xx ?? gateway ?? DEFAULT_OUTLIER_DETECTION.consecutiveFailures,
    baseEjectionMs: duration('base_ejection_time') ?? DEFAULT_OUTLIER_DETECTION.baseEjectionMs,
    maxEjectionMs: duration('max_ejection_time') ?? DEFAULT_OUTLIER_DETECTION.maxEjectionMs,
    count5xx: consecutive5xx !== undefined,
  }
}

/** The global values a route's service settings fall back to. */
export interface RouteServiceDefaults {
  readonly bearerTokenFormat: string
  readonly idpAccessTokenAllowedAudiences: readonly string[]
}

export function routeServiceDefaults(raw: Readonly<Record<string, unknown>>): RouteServiceDefaults {
  return {
    bearerTokenFormat: str(raw['bearer_token_format']) ?? 'default',
    idpAccessTokenAllowedAudiences: strings(raw['idp_access_token_allowed_audiences']) ?? [],
  }
}

/** The typed per-route service fields of `RouteConfig`. */
export type RouteServiceSettings = Pick<
  RouteConfig,
  | 'showErrorDetails'
  | 'jwtGroupsFilter'
  | 'jwtIssuerFormat'
  | 'kubernetesServiceAccountToken'
  | 'enableGoogleCloudServerlessAuthentication'
  | 'idpClientId'
  | 'idpClientSecret'
  | 'bearerTokenFormat'
  | 'idpAccessTokenAllowedAudiences'
  | 'healthyPanicThresholdPercent'
  | 'outlierDetection'
>

/** Reads (and checks) a route's service settings from its normalised keys; `path` is the route's key path. */
export function readRouteServiceSettings(raw: Readonly<Record<string, unknown>>, path: string, ctx: LoadContext, defaults: RouteServiceDefaults): RouteServiceSettings {
  const token = typeof raw['kubernetes_service_account_token'] === 'string' ? raw['kubernetes_service_account_token'].trim() : ''
  const issuerFormat = parseIssuerFormat(raw['jwt_issuer_format'])
  if (raw['jwt_issuer_format'] !== undefined && issuerFormat === undefined) ctx.issues.error(joinPath(path, 'jwt_issuer_format'), raw['jwt_issuer_format'], 'expected hostOnly or uri')
  const panic = raw['healthy_panic_threshold']
  if (typeof panic === 'number' && panic > 100) ctx.issues.error(joinPath(path, 'healthy_panic_threshold'), panic, 'expected a percentage from 0 to 100')
  return {
    showErrorDetails: raw['show_error_details'] === true,
    jwtGroupsFilter: nonEmptyStrings(raw['jwt_groups_filter']),
    jwtIssuerFormat: issuerFormat,
    kubernetesServiceAccountToken: token === '' ? undefined : token,
    enableGoogleCloudServerlessAuthentication: raw['enable_google_cloud_serverless_authentication'] === true,
    idpClientId: str(raw['idp_client_id']),
    idpClientSecret: str(raw['idp_client_secret']),
    bearerTokenFormat: str(raw['bearer_token_format']) ?? defaults.bearerTokenFormat,
    idpAccessTokenAllowedAudiences: strings(raw['idp_access_token_allowed_audiences']) ?? defaults.idpAccessTokenAllowedAudiences,
    healthyPanicThresholdPercent: typeof panic === 'number' ? panic : DEFAULT_HEALTHY_PANIC_THRESHOLD_PERCENT,
    outlierDetection: readOutlierDetection(raw['outlier_detection'], joinPath(path, 'outlier_detection'), ctx),
  }
}
