import type { Pattern } from '../shared/pattern.js'

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
  /** Only HTTP health checks are performed; tcp/grpc ones are accepted and reported as unsupported warnings. */
  readonly http: HttpHealthCheck | undefined
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

  /**
   * Every key of the route as written (validated), for settings consumed by later issues.
   * Values are coerced to their kind: durations in ms, bools/ints as numbers, enums in canonical
   * case; `<key>_file` contents are read into `<key>` (the `_file` key holds the absolute path)
   * and inline base64 PEM is decoded to PEM text. No defaults are filled in.
   */
  readonly raw: Readonly<Record<string, unknown>>
}

export interface ServerCertificate {
  readonly cert: string
  readonly key: string
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

  /**
   * Every global key (validated), for settings consumed by later issues. Same normalisation as
   * `RouteConfig.raw`, and descriptor defaults are filled in (e.g. `cookie_name` = `_pomerium`,
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
