import type { MtlsEnforcement } from '../policy/index.js'
import type { Pattern } from '../shared/pattern.js'
import type { ClientCertPolicy } from './mtls.js'
import type { StorageChoice } from './storage-choice.js'
import type { TracingSettings } from './tracing.js'
import type { IssuerFormat } from './identity-settings.js'
import type { DeviceType } from './devices.js'
import type { ForwardAuthSettings } from './forward-auth.js'
import type { ExtAuthzSettings } from './ext-authz.js'
import type { DirectorySettings } from './directory.js'

/**
 * The normalised, validated configuration that every service consumes.
 *
 * The loader (`load.ts`) turns a Pomerium-style YAML/JSON file plus environment overrides into
 * this shape; nothing downstream ever sees raw YAML. Durations are milliseconds, URLs are parsed,
 * regexes are compiled, file references are read. Objects are deep-frozen after loading.
 */

/** Where a value came from, for error messages and for the hot-reload file watcher. */
export interface ConfigSourceInfo {
  /** The config file path, or undefined when only environment variables were used. */
  readonly file: string | undefined
  /** Every file the config references (certificates, keys, CAs, secrets); watched for reload. */
  readonly referencedFiles: readonly string[]
}

export type LoadBalancingPolicy = 'ROUND_ROBIN' | 'RANDOM' | 'LEAST_REQUEST' | 'RING_HASH' | 'MAGLEV'

export interface UpstreamTarget {
  /** Scheme is one of http:, https:, h2c: (kept as written, lower-cased). */
  readonly url: URL
  /** Relative weight for load balancing (`"url,weight"` form); default 1. */
  readonly weight: number
}

export interface HttpHealthCheck {
  readonly host: string | undefined
  readonly path: string
  /** Inclusive-exclusive ranges as Envoy gives them; default [[200, 201]]. */
  readonly expectedStatuses: readonly (readonly [number, number])[]
}

export interface HealthCheckConfig {
  readonly timeoutMs: number
  readonly intervalMs: number
  readonly unhealthyThreshold: number
  readonly healthyThreshold: number
  /** HTTP and TCP health checks are performed; grpc ones are accepted and reported as unsupported warnings. */
  readonly http: HttpHealthCheck | undefined
  readonly tcp: TcpHealthCheck | undefined
}

/** Envoy's `tcp_health_check`: bytes to send, and the byte strings the answer must contain in order. */
export interface TcpHealthCheck {
  readonly send: Buffer | undefined
  readonly receive: readonly Buffer[]
}

export interface RedirectConfig {
  readonly httpsRedirect: boolean | undefined
  readonly schemeRedirect: string | undefined
  readonly hostRedirect: string | undefined
  readonly portRedirect: number | undefined
  readonly pathRedirect: string | undefined
  readonly prefixRewrite: string | undefined
  readonly responseCode: number
  readonly stripQuery: boolean
}

export interface DirectResponse {
  readonly status: number
  readonly body: string
}

export interface RewriteResponseHeader {
  readonly header: string
  readonly prefix: string
  readonly value: string
}

export interface UpstreamTlsConfig {
  readonly skipVerify: boolean
  /** SNI and certificate name to expect (`tls_upstream_server_name`, alias `tls_server_name`). */
  readonly serverName: string | undefined
  /** PEM text of extra trust anchors (`tls_custom_ca[_file]`). */
  readonly customCa: string | undefined
  /** PEM client certificate and key (`tls_client_cert[_file]` / `tls_client_key[_file]`). */
  readonly clientCert: string | undefined
  readonly clientKey: string | undefined
}

export interface RouteFrom {
  /** `https`, `http`, `tcp+https`, `udp+https` or `ssh`. */
  readonly scheme: string
  /** Lower-cased host name without a trailing dot; may contain `*` wildcards. */
  readonly host: string
  /** Undefined when the `from` URL has no explicit port (matches any incoming port). */
  readonly port: number | undefined
}

/**
 * The `circuit_breaker_thresholds` Portcullis applies, per upstream (`to` origin). Over a limit a
 * request is answered `503` at once instead of waiting.
 */
export interface CircuitBreakers {
  /** Connections to the upstream (HTTP/1.1 pools; an h2c upstream always uses one). At least 1. */
  readonly maxConnections: number
  /** Requests waiting for one of those connections to be free. */
  readonly maxPendingRequests: number
  /** Requests (and upgraded tunnels) in flight to the upstream. */
  readonly maxRequests: number
}

/**
 * Passive ejection of a failing upstream (`outlier_detection`, Envoy's fields). Envoy's defaults:
 * 5 consecutive gateway failures, 30 s base ejection, 300 s at most.
 */
export interface OutlierDetection {
  readonly consecutiveFailures: number
  readonly baseEjectionMs: number
  readonly maxEjectionMs: number
  /** Also count upstream 5xx answers (`outlier_detection.consecutive_5xx` is set). */
  readonly count5xx: boolean
}

export interface RouteConfig {
  /** Position in the config's route list (0-based); also used in key paths (`routes[3]`). */
  readonly index: number
  /** Stable id: hash of from/prefix/path/regex/to|redirect|response, as Pomerium computes its route id. */
  readonly id: string
  readonly name: string | undefined
  readonly description: string | undefined
  readonly logoUrl: string | undefined
  readonly from: RouteFrom
  readonly fromUrl: string
  readonly prefix: string | undefined
  readonly path: string | undefined
  /** The regex as written; `regexCompiled` matches whole paths (RE2 semantics). */
  readonly regex: string | undefined
  readonly regexCompiled: Pattern | undefined

  readonly to: readonly UpstreamTarget[]
  readonly redirect: RedirectConfig | undefined
  readonly response: DirectResponse | undefined
  readonly loadBalancingPolicy: LoadBalancingPolicy
  readonly healthChecks: readonly HealthCheckConfig[]

  readonly prefixRewrite: string | undefined
  readonly regexRewritePattern: Pattern | undefined
  readonly regexRewriteSubstitution: string | undefined
  readonly preserveHostHeader: boolean
  readonly hostRewrite: string | undefined
  readonly hostRewriteHeader: string | undefined
  readonly hostPathRegexRewritePattern: Pattern | undefined
  readonly hostPathRegexRewriteSubstitution: string | undefined

  readonly setRequestHeaders: Readonly<Record<string, string>>
  readonly removeRequestHeaders: readonly string[]
  /** Route response headers merged over the global ones; `disable` already applied. */
  readonly setResponseHeaders: Readonly<Record<string, string>>
  readonly rewriteResponseHeaders: readonly RewriteResponseHeader[]

  /** Route timeout in ms; 0 disables. Defaults to `default_upstream_timeout` (0 for upgrade routes). */
  readonly timeoutMs: number
  /** Stream idle timeout in ms; 0 disables. */
  readonly idleTimeoutMs: number
  readonly allowWebsockets: boolean
  readonly allowSpdy: boolean
  /** Lower-cased upgrade tokens allowed on this route (websocket / spdy/3.1 folded in). */
  readonly allowedUpgrades: readonly string[]
  /** `allow_ambiguous_paths` (Portcullis only): forward paths a lenient upstream could read as another path. */
  readonly allowAmbiguousPaths: boolean

  readonly tls: UpstreamTlsConfig
  /** `circuit_breaker_thresholds` (each field: route, else global, else Envoy's default). */
  readonly circuitBreakers: CircuitBreakers

  // Access control: consumed by the authorize service.
  readonly allowPublicUnauthenticatedAccess: boolean
  readonly allowAnyAuthenticatedUser: boolean
  readonly corsAllowPreflight: boolean
  readonly allowedUsers: readonly string[]
  readonly allowedDomains: readonly string[]
  readonly allowedIdpClaims: Readonly<Record<string, readonly unknown[]>>
  /** The embedded PPL as written (object or list); parsed by the authorize issue. */
  readonly policy: unknown
  /** Effective value: the route's setting, else the global `pass_identity_headers`. */
  readonly passIdentityHeaders: boolean | undefined
  /** `show_error_details`: policy evaluation details on the route's error pages. */
  readonly showErrorDetails: boolean
  /** `jwt_groups_filter` of the route ([] when unset). */
  readonly jwtGroupsFilter: readonly string[]
  /** `jwt_issuer_format` of the route; undefined uses the global one. */
  readonly jwtIssuerFormat: IssuerFormat | undefined
  /** `kubernetes_service_account_token[_file]`, trimmed; undefined when unset or blank. */
  readonly kubernetesServiceAccountToken: string | undefined
  readonly enableGoogleCloudServerlessAuthentication: boolean

  // Sign-in: consumed by the authenticate service.
  /** The route's own `idp_client_id` / `idp_client_secret[_file]` (undefined: the global client). */
  readonly idpClientId: string | undefined
  readonly idpClientSecret: string | undefined
  /** Effective `bearer_token_format`: the route's, else the global one (default `default`). */
  readonly bearerTokenFormat: string
  /** Effective `idp_access_token_allowed_audiences`: the route's, else the global list ([] when neither). */
  readonly idpAccessTokenAllowedAudiences: readonly string[]

  // Upstream health: consumed by the proxy's clusters.
  /** `healthy_panic_threshold` (percent, 0..100); Envoy's default 50. */
  readonly healthyPanicThresholdPercent: number
  /** `outlier_detection` over Envoy's defaults. */
  readonly outlierDetection: OutlierDetection
}

export interface ServerCertificate {
  readonly cert: string
  readonly key: string
}

/** The session cookie (`cookie_*`). */
export interface CookieSettings {
  /** `cookie_name` (default `_pomerium`). */
  readonly name: string
  readonly domain: string | undefined
  /** `cookie_http_only` (default true). */
  readonly httpOnly: boolean
  /** `cookie_expire` in ms (default 14 h): the cookie's and the session's lifetime. */
  readonly expireMs: number
  readonly sameSite: 'strict' | 'lax' | 'none' | undefined
}

/** The global identity provider client (`idp_*`). */
export interface IdpClientSettings {
  /** `idp_provider` as written (canonical case); undefined when unset. */
  readonly provider: string | undefined
  readonly providerUrl: string | undefined
  readonly clientId: string | undefined
  readonly clientSecret: string | undefined
  readonly scopes: readonly string[] | undefined
  readonly requestParams: Readonly<Record<string, string>> | undefined
}

/** The built-in provider (`builtin_idp_*`, Portcullis only; docs/builtin-idp.md). */
export interface BuiltinIdpSettings {
  readonly usersFile: string | undefined
  /** `builtin_idp_address` as written (default `127.0.0.1:8081`). */
  readonly address: string
  /** Its host without brackets ('' when the address has none) and port. */
  readonly host: string
  readonly port: number
}

/** The metrics listener (`metrics_*`); every field undefined when unset. */
export interface MetricsSettings {
  readonly address: string | undefined
  /** Base64 of `user:password` (checked at load). */
  readonly basicAuth: string | undefined
  /** PEM; certificate and key are both set or both unset, and a client CA needs them (checked at load). */
  readonly certificate: string | undefined
  readonly certificateKey: string | undefined
  readonly clientCa: string | undefined
}

export type HeadersWithUnderscoresAction = 'allow' | 'reject' | 'drop'
export type EscapedSlashesAction = 'keep' | 'reject' | 'unescape-and-redirect' | 'unescape-and-forward'

export interface Config {
  readonly source: ConfigSourceInfo
  readonly services: readonly string[]
  /** Host and port of the main listener (`address`, default `:443`). */
  readonly address: { readonly host: string | undefined; readonly port: number }
  readonly insecureServer: boolean
  /** `codec_type`: which HTTP versions the main listener speaks (`http3` is served as `auto`). */
  readonly codecType: 'auto' | 'http1' | 'http2'
  /** `use_proxy_protocol`: every connection must start with a PROXY v1/v2 header. */
  readonly useProxyProtocol: boolean
  /** `dns_lookup_family` for upstream connections. */
  readonly dnsLookupFamily: 'AUTO' | 'V4_PREFERRED' | 'V4_ONLY' | 'V6_ONLY' | 'ALL'
  readonly httpRedirectAddr: { readonly host: string | undefined; readonly port: number } | undefined
  readonly certificates: readonly ServerCertificate[]

  readonly timeoutReadMs: number
  readonly timeoutWriteMs: number
  readonly timeoutIdleMs: number
  readonly defaultUpstreamTimeoutMs: number

  readonly headersWithUnderscoresAction: HeadersWithUnderscoresAction
  readonly pathWithEscapedSlashesAction: EscapedSlashesAction
  readonly mergeSlashes: boolean
  readonly normalizePath: boolean
  readonly skipXffAppend: boolean
  readonly xffNumTrustedHops: number
  /** Global `set_response_headers` after defaults/`disable` are applied. */
  readonly setResponseHeaders: Readonly<Record<string, string>>
  readonly allowUpgrades: readonly string[]
  readonly passIdentityHeaders: boolean

  readonly logLevel: string
  readonly accessLogFields: readonly string[]

  /** Number of data-plane worker processes (Portcullis setting `workers`; 0/1 = single process). */
  readonly workers: number

  readonly routes: readonly RouteConfig[]

  // Sign-in (authenticate service, session settings).
  /** `authenticate_service_url` (default `https://authenticate.pomerium.app`). */
  readonly authenticateServiceUrl: string
  readonly authenticateInternalServiceUrl: string | undefined
  readonly signoutRedirectUrl: string | undefined
  readonly cookie: CookieSettings
  readonly idp: IdpClientSettings
  readonly builtinIdp: BuiltinIdpSettings
  /** `programmatic_redirect_domain_whitelist` (default `[localhost]`). */
  readonly programmaticRedirectDomainWhitelist: readonly string[]
  /** `signing_key[_file]` PEM text; undefined: derived from `shared_secret`. */
  readonly signingKey: string | undefined
  /** `shared_secret[_file]` / `cookie_secret[_file]` as written (base64 of 32 bytes, checked at load). */
  readonly sharedSecret: string | undefined
  readonly cookieSecret: string | undefined

  // Authorize.
  /** `authorize_log_fields`, unknown names dropped (with a warning at load). */
  readonly authorizeLogFields: readonly string[]
  /** `jwt_claims_headers` normalised to `Header: claim`. */
  readonly jwtClaimsHeaders: Readonly<Record<string, string>>
  /** Global `jwt_issuer_format` (default `hostOnly`). */
  readonly jwtIssuerFormat: IssuerFormat
  /** Global `jwt_groups_filter` ([] when unset). */
  readonly jwtGroupsFilter: readonly string[]
  /** `downstream_mtls.enforcement` when a client CA is configured, else undefined. */
  readonly mtlsEnforcement: MtlsEnforcement | undefined
  /** `downstream_mtls` as the TLS layer and the mTLS stage use it; undefined when no CA is set. */
  readonly downstreamMtls: ClientCertPolicy | undefined
  /** `forward_auth`: the listener for nginx, Caddy and Traefik (docs/delegated-authorization.md). */
  readonly forwardAuth: ForwardAuthSettings | undefined
  /** `ext_authz`: the Envoy ext_authz gRPC service (docs/delegated-authorization.md). */
  readonly extAuthz: ExtAuthzSettings | undefined
  /** Directory sync and SCIM (docs/directory.md). */
  readonly directory: DirectorySettings
  /** The built-in device types and `device_types` (docs/devices.md). */
  readonly deviceTypes: readonly DeviceType[]
  /**
   * `device_approvers`: a PPL policy (checked at load); the users it allows approve and revoke
   * devices on `/.pomerium/devices`. Undefined: nobody does on a page (the command still can).
   */
  readonly deviceApprovers: unknown
  /** `runtime_flags` merged over the flag defaults. */
  readonly runtimeFlags: Readonly<Record<string, boolean>>

  // Internal services.
  /** Where the databroker is: `databroker_internal_service_url`, else `_service_urls`, else `_service_url`. */
  readonly databrokerServiceUrls: readonly string[]
  /** Same for the authorize service. */
  readonly authorizeServiceUrls: readonly string[]
  readonly grpcAddress: string | undefined
  /** `grpc_insecure`; undefined when unset (the default depends on the services run). */
  readonly grpcInsecure: boolean | undefined
  /** `grpc_client_timeout` in ms (default 10 s; 0 = none). */
  readonly grpcClientTimeoutMs: number
  /** `certificate_authority[_file]` PEM, trusted when dialing internal services. */
  readonly certificateAuthority: string | undefined
  readonly overrideCertificateName: string | undefined
  /** The record store (`databroker_storage_*`). */
  readonly storage: StorageChoice

  // Observability.
  readonly metrics: MetricsSettings
  /** `health_check_addr` (default `127.0.0.1:28080`). */
  readonly healthCheckAddr: string
  /** OpenTelemetry tracing (`otel_*`); undefined when off. */
  readonly tracing: TracingSettings | undefined

  /**
   * Config-internal: every global key (validated), for the config system's own checks, the
   * status/validate commands and the config checksum. Services read the typed fields above
   * (lint enforces it outside src/config/). Values are coerced to their kind: durations in ms,
   * bools/ints as numbers, enums in canonical case; `<key>_file` contents are read into `<key>`
   * (the `_file` key holds the absolute path) and inline base64 PEM is decoded to PEM text;
   * descriptor defaults are filled in (e.g. `cookie_name` = `_pomerium`,
   * `cookie_expire` = 50400000). `runtime_flags` is merged over the flag defaults,
   * `jwt_claims_headers` is normalised to a `Header: claim` map, and `routes`/`policy` are
   * removed (use `routes` above).
   */
  readonly raw: Readonly<Record<string, unknown>>
}

/** One problem found while loading; `severity: 'warning'` does not stop the config from loading. */
export interface ConfigIssue {
  readonly severity: 'error' | 'warning'
  readonly file: string | undefined
  readonly line: number | undefined
  readonly column: number | undefined
  /** Key path such as `routes[3].from`, or the environment variable name. */
  readonly path: string
  readonly value: unknown
  readonly message: string
  /**
   * What kind of problem this is, where a command treats it specially: `unknown_key` (a key
   * nobody reads: `validate` fails on it unless `--allow-unknown`), `not_in_effect` (accepted
   * settings that do nothing yet), `no_sign_in` (protected routes that nobody can sign in to).
   */
  readonly kind?: 'unknown_key' | 'not_in_effect' | 'no_sign_in' | undefined
}
