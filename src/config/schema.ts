/**
 * The declarative table of every setting Portcullis understands: one row per Pomerium global
 * setting (reference §2.2), per route setting (§3) and per removed key (§1.5).
 *
 * This table is the single source of truth for three consumers: the loader's generic
 * validation (`kind`, `values`), environment overrides (`env`, `file`) and the generated
 * reference page (`scripts/gen-config-docs.ts`). Setting-specific rules that a kind cannot
 * express (address syntax, certificate pairs, route consistency) live in the loader.
 */
import { PROVIDER_NAMES } from './providers.js'
import { LOG_LEVEL_NAMES } from '../shared/log.js'

/** How a raw value is checked and coerced. */
export type SettingKind =
  | 'string'
  | 'bool'
  | 'duration'
  | 'url'
  | 'int'
  | 'list'
  | 'map'
  | 'enum'
  | 'object'
  | 'any'

/** One configuration key. */
export interface SettingDescriptor {
  /** YAML key (for nested settings the key inside the parent object). */
  readonly key: string
  readonly kind: SettingKind
  /** Default as it would be written in YAML (durations as Go strings); undefined = unset. */
  readonly default: unknown
  /** Human description of the default when it is computed rather than a constant. */
  readonly defaultText: string | undefined
  /** One-sentence meaning, used verbatim in the generated docs. */
  readonly doc: string
  /** Environment variable that overrides the value, or undefined when there is none. */
  readonly env: string | undefined
  /** Whether a `<key>_file` variant exists (env `<ENV>_FILE`); the file wins over the inline value. */
  readonly file: boolean
  /** Inline value is base64-encoded PEM (raw PEM also accepted); the `_file` variant is PEM text. */
  readonly pem: boolean
  /** Allowed values for `enum` (matched case-insensitively, normalised to the spelling here). */
  readonly values: readonly string[] | undefined
  /** Element shape for `list`: strings (comma-separated in env) or objects. */
  readonly items: 'string' | 'object'
  /** Nested settings of an `object` (env name = parent env + `_` + child key upper-cased). */
  readonly children: readonly SettingDescriptor[] | undefined
}

interface Options {
  default?: unknown
  defaultText?: string
  env?: string | false
  file?: boolean
  pem?: boolean
  values?: readonly string[]
  items?: 'string' | 'object'
  children?: readonly SettingDescriptor[]
}

/** Builds a descriptor; the env name follows reference §2.1 (upper-cased key) unless overridden. */
function def(
  key: string,
  kind: SettingKind,
  doc: string,
  options: Options = {},
): SettingDescriptor {
  const env = options.env === false ? undefined : (options.env ?? key.toUpperCase())
  return {
    key,
    kind,
    default: options.default,
    defaultText: options.defaultText,
    doc,
    env,
    file: options.file ?? false,
    pem: options.pem ?? false,
    values: options.values,
    items: options.items ?? 'string',
    children: options.children?.map((c) =>
      env === undefined ? { ...c, env: undefined } : { ...c, env: `${env}_${c.key.toUpperCase()}` },
    ),
  }
}

/** Route settings have no environment binding of their own (routes come from `POLICY`). */
function route(key: string, kind: SettingKind, doc: string, options: Options = {}): SettingDescriptor {
  return def(key, kind, doc, { ...options, env: false })
}

/** Access log field names of reference §9.2 (`headers.<Name>` is also accepted). */
export const ACCESS_LOG_FIELDS: readonly string[] = [
  'authority',
  'client-certificate',
  'cluster-stat-name',
  'duration',
  'forwarded-for',
  'ip',
  'method',
  'path',
  'query',
  'referer',
  'request-id',
  'response-code',
  'response-code-details',
  'size',
  'upstream-cluster',
  'user-agent',
  'headers',
]

/** Default access log fields (reference §9.2). */
export const DEFAULT_ACCESS_LOG_FIELDS: readonly string[] = [
  'upstream-cluster',
  'method',
  'authority',
  'path',
  'user-agent',
  'referer',
  'forwarded-for',
  'request-id',
  'duration',
  'size',
  'response-code',
  'response-code-details',
]

/** Authorize log field names of reference §9.3. */
export const AUTHORIZE_LOG_FIELDS: readonly string[] = [
  'body',
  'check-request-id',
  'cluster-stat-name',
  'email',
  'envoy-route-checksum',
  'envoy-route-id',
  'headers',
  'host',
  'id-token',
  'id-token-claims',
  'impersonate-email',
  'impersonate-session-id',
  'impersonate-user-id',
  'ip',
  'mcp-method',
  'mcp-tool',
  'mcp-tool-parameters',
  'method',
  'path',
  'query',
  'removed-groups-count',
  'request-id',
  'route-checksum',
  'route-id',
  'service-account-id',
  'session-id',
  'user',
]

/** Default authorize log fields (reference §9.3). */
export const DEFAULT_AUTHORIZE_LOG_FIELDS: readonly string[] = [
  'request-id',
  'check-request-id',
  'method',
  'path',
  'host',
  'ip',
  'session-id',
  'impersonate-session-id',
  'impersonate-user-id',
  'impersonate-email',
  'removed-groups-count',
  'service-account-id',
  'user',
  'email',
  'envoy-route-checksum',
  'envoy-route-id',
  'route-checksum',
  'route-id',
]

/** Runtime flags and their defaults (reference §2.2). */
export const DEFAULT_RUNTIME_FLAGS: Readonly<Record<string, boolean>> = {
  add_extra_metrics_labels: true,
  allow_any_sign_out_redirect_uri: false,
  authorize_use_synced_data: true,
  config_hot_reload: true,
  debug_admin_endpoints: false,
  envoy_resource_manager: true,
  grpc_databroker_keepalive: true,
  match_any_incoming_port: true,
  mcp: true,
  mcp_dynamic_client_registration: false,
  pomerium_jwt_endpoint: false,
  refresh_session_at_id_token_expiration: true,
  routes_portal: true,
  set_envoy_concurrency_to_go_max_procs: true,
  ssh_allow_direct_tcpip: false,
  ssh_routes_portal: false,
  ssh_upstream_tunnel: false,
}

/** Service names accepted by `services` (`cache` is the old name of `databroker`). */
export const SERVICE_NAMES: readonly string[] = [
  'all',
  'proxy',
  'authenticate',
  'authorize',
  'databroker',
  'cache',
]

/** The provider names of Pomerium docs: Identity providers, plus Pomerium's hosted authenticate. */
const IDP_PROVIDERS = [...PROVIDER_NAMES, 'hosted', 'builtin']

const CIRCUIT_BREAKER_FIELDS = [
  // defaultText only: a default value would be filled into every route and hide the global one.
  def('max_connections', 'int', 'Maximum connections to each upstream (at least 1).', { defaultText: '1024' }),
  def('max_pending_requests', 'int', 'Maximum requests waiting for a connection to each upstream; more get 503.', { defaultText: '1024' }),
  def('max_requests', 'int', 'Maximum requests in flight to each upstream; more get 503.', { defaultText: '1024' }),
  def('max_retries', 'int', 'Maximum parallel retries (Portcullis does not retry).', { defaultText: '3' }),
  def('max_connection_pools', 'int', 'Maximum connection pools (Portcullis keeps one per upstream).', { defaultText: 'unlimited' }),
]

const BEARER_TOKEN_FORMATS = ['default', 'idp_access_token', 'idp_identity_token', 'jwt']

/** Every global setting, in reference §2.2 order, plus the Portcullis-only `workers`. */
export const GLOBAL_SETTINGS: readonly SettingDescriptor[] = [
  def('services', 'list', 'Services this process runs: all, proxy, authenticate, authorize, databroker (alias cache).', { default: ['all'] }),
  def('address', 'string', 'Main HTTPS (or HTTP when insecure_server) listener address, `host:port` or `:port`.', { default: ':443' }),
  def('insecure_server', 'bool', 'Serve plain HTTP without TLS (testing, or behind a TLS-terminating load balancer).', { default: false }),
  def('http_redirect_addr', 'string', 'Plain-HTTP listener that 301-redirects every request to https.'),
  def('codec_type', 'enum', 'Downstream HTTP codec.', { default: 'auto', values: ['auto', 'http1', 'http2', 'http3'] }),
  def('use_proxy_protocol', 'bool', 'Require the HAProxy PROXY protocol (v1/v2) on incoming connections.', { default: false }),
  def('certificate', 'string', 'Server certificate (base64 PEM; the _file variant is a PEM file path).', { file: true, pem: true }),
  def('certificate_key', 'string', 'Private key of `certificate` (base64 PEM; the _file variant is a PEM file path).', { file: true, pem: true }),
  def('certificates', 'list', 'Additional server certificates as `{cert, key}` file paths, selected by SNI.', { items: 'object' }),
  def('certificate_authority', 'string', 'CA bundle trusted when dialing other Pomerium services and the IdP (base64 PEM).', { file: true, pem: true }),
  def('override_certificate_name', 'string', 'Expected certificate name when dialing internal services.'),
  def('tls_derive', 'string', 'Derive an internal CA and certificate for this name from the shared secret.'),
  def('autocert', 'bool', 'Obtain certificates for route hosts with ACME.', { default: false }),
  def('autocert_ca', 'url', 'ACME directory URL.'),
  def('autocert_email', 'string', 'ACME account e-mail.'),
  def('autocert_use_staging', 'bool', 'Use the ACME staging environment.', { default: false }),
  def('autocert_eab_key_id', 'string', 'ACME external account binding key id.'),
  def('autocert_eab_mac_key', 'string', 'ACME external account binding MAC key.'),
  def('autocert_must_staple', 'bool', 'Request OCSP must-staple certificates.', { default: false }),
  def('autocert_dir', 'string', 'Directory where ACME certificates are stored.', { defaultText: '<data dir>/autocert' }),
  def('autocert_trusted_ca', 'string', 'CA trusted when talking to the ACME server (base64 PEM).', { file: true, pem: true }),
  def('shared_secret', 'string', 'Base64 of 32 bytes: key for inter-service authentication and session handle signing.', { file: true, defaultText: 'random per process (all-in-one)' }),
  def('cookie_secret', 'string', 'Base64 of 32 bytes: key for CSRF, OAuth state and PKCE cookies.', { file: true, defaultText: 'random per process (all-in-one)' }),
  def('cookie_name', 'string', 'Session cookie name (CSRF cookie is `<name>_csrf`).', { default: '_pomerium' }),
  def('cookie_domain', 'string', 'Cookie Domain attribute.', { defaultText: 'host that set it' }),
  def('cookie_http_only', 'bool', 'Set HttpOnly on session cookies.', { default: true }),
  def('cookie_expire', 'duration', 'Cookie lifetime and session lifetime.', { default: '14h' }),
  def('cookie_same_site', 'enum', 'Cookie SameSite attribute.', { values: ['strict', 'lax', 'none'], defaultText: 'unset (browser default)' }),
  def('authenticate_service_url', 'url', 'External URL of the authenticate service.', { default: 'https://authenticate.pomerium.app' }),
  def('authenticate_internal_service_url', 'url', 'Internal URL of the authenticate service.', { defaultText: '= authenticate_service_url' }),
  def('authenticate_callback_path', 'string', 'OAuth callback path on the authenticate host.', { default: '/oauth2/callback' }),
  def('authorize_service_url', 'url', 'Where the proxy finds the authorize service.', { defaultText: 'http://127.0.0.1:5443 (all-in-one)' }),
  def('authorize_service_urls', 'list', 'Several authorize service URLs.'),
  def('authorize_internal_service_url', 'url', 'Internal URL of the authorize service.'),
  def('databroker_service_url', 'url', 'Where services find the databroker.', { defaultText: 'http://127.0.0.1:5443 (all-in-one)' }),
  def('databroker_service_urls', 'list', 'Several databroker service URLs.'),
  def('databroker_internal_service_url', 'url', 'Internal URL of the databroker.'),
  def('grpc_address', 'string', 'gRPC listener address.', { defaultText: '127.0.0.1:5443 (Pomerium: :5443 all-in-one, :443 split; set it in split mode)' }),
  def('grpc_insecure', 'bool', 'Plaintext gRPC between services.', { defaultText: 'true all-in-one, false split' }),
  def('grpc_client_timeout', 'duration', 'Timeout of internal gRPC calls.', { default: '10s' }),
  def('signout_redirect_url', 'url', 'Where users land after sign-out.'),
  def('idp_provider', 'enum', 'Identity provider type.', { values: IDP_PROVIDERS, defaultText: 'hosted authenticate' }),
  def('idp_provider_url', 'string', 'Identity provider issuer / discovery base URL.'),
  def('idp_client_id', 'string', 'OAuth client id.'),
  def('idp_client_secret', 'string', 'OAuth client secret.', { file: true }),
  def('idp_scopes', 'list', 'OAuth scopes.', { defaultText: 'provider default' }),
  def('idp_request_params', 'map', 'Extra authorization request parameters.'),
  def('idp_access_token_allowed_audiences', 'list', 'Allowed `aud` values for IdP access tokens used as bearer tokens.'),
  def('identity_providers', 'any', 'Additional identity providers used only to verify JWT bearer tokens.'),
  def('bearer_token_format', 'enum', 'How bearer tokens are interpreted.', { default: 'default', values: BEARER_TOKEN_FORMATS }),
  def('signing_key', 'string', 'PEM (or base64 PEM) keys signing the JWT assertion; all are published in the JWKS.', { file: true, pem: true, defaultText: 'derived from shared_secret' }),
  def('jwt_claims_headers', 'any', 'Extra upstream claim headers: map `Header: claim` or list of claims.'),
  def('jwt_groups_filter', 'list', 'Only these groups appear in the `groups` claim.'),
  def('jwt_issuer_format', 'string', 'Format of the `iss` claim: host only (default) or `uri`.'),
  def('pass_identity_headers', 'bool', 'Default for routes: send identity headers upstream.', { default: false }),
  def('set_response_headers', 'map', 'Response headers for all routes. Setting it replaces the defaults (`{}` sends none; name a default to keep it); a `disable` key sends none. Env `HEADERS` sets it too.', { defaultText: 'security headers (X-Frame-Options, X-XSS-Protection, HSTS with TLS)' }),
  def('default_upstream_timeout', 'duration', 'Route timeout when a route sets no `timeout`.', { default: '30s' }),
  def('timeout_read', 'duration', 'Time allowed to receive the whole request.', { default: '30s' }),
  def('timeout_write', 'duration', 'Maximum stream duration (0 = none).', { default: '0' }),
  def('timeout_idle', 'duration', 'Idle connection timeout.', { default: '5m' }),
  def('allow_upgrades', 'list', 'HTTP upgrade types allowed on every route (e.g. websocket).'),
  def('headers_with_underscores_action', 'enum', 'What to do with request header names containing `_`.', { default: 'reject', values: ['allow', 'reject', 'drop'] }),
  def('path_with_escaped_slashes_action', 'enum', 'What to do with paths containing %2F or %5C.', { default: 'reject', values: ['keep', 'reject', 'unescape-and-redirect', 'unescape-and-forward'] }),
  def('merge_slashes', 'bool', 'Merge adjacent slashes in request paths.', { default: true }),
  def('normalize_path', 'bool', 'Normalise request paths (RFC 3986).', { default: true }),
  def('skip_xff_append', 'bool', 'Do not append the client address to X-Forwarded-For.', { default: false }),
  def('xff_num_trusted_hops', 'int', 'Number of trusted X-Forwarded-For hops.', { default: 0 }),
  def('programmatic_redirect_domain_whitelist', 'list', 'Allowed redirect hosts for programmatic login.', { default: ['localhost'] }),
  def('downstream_mtls', 'object', 'Client certificate requirements.', {
    children: [
      def('ca', 'string', 'Trusted client CA (base64 PEM).', { file: true, pem: true }),
      def('crl', 'string', 'Certificate revocation lists (base64 PEM).', { file: true, pem: true }),
      def('enforcement', 'enum', 'How a missing or invalid client certificate is handled.', { default: 'policy_with_default_deny', values: ['policy_with_default_deny', 'policy', 'reject_connection'] }),
      def('match_subject_alt_names', 'any', 'Required client certificate SANs (list of `{type: regex}`).'),
      def('max_verify_depth', 'int', 'Maximum client certificate chain depth.'),
    ],
  }),
  def('log_level', 'enum', 'Log level.', { default: 'info', values: LOG_LEVEL_NAMES }),
  def('proxy_log_level', 'enum', 'Data-plane log level.', { values: LOG_LEVEL_NAMES, defaultText: '= log_level' }),
  def('access_log_fields', 'list', 'Access log fields (`headers.<Name>` allowed).', { default: DEFAULT_ACCESS_LOG_FIELDS }),
  def('authorize_log_fields', 'list', 'Authorize decision log fields.', { default: DEFAULT_AUTHORIZE_LOG_FIELDS }),
  def('metrics_address', 'string', 'Prometheus metrics listener.', { defaultText: 'disabled' }),
  def('metrics_basic_auth', 'string', 'Base64 `user:password` required on the metrics endpoint.'),
  def('metrics_certificate', 'string', 'Metrics listener certificate (base64 PEM).', { file: true, pem: true }),
  def('metrics_certificate_key', 'string', 'Metrics listener key (base64 PEM).', { file: true, pem: true }),
  def('metrics_client_ca', 'string', 'CA for metrics client certificates (base64 PEM).', { file: true, pem: true }),
  def('otel_traces_exporter', 'string', 'OpenTelemetry trace exporter (`otlp` or `none`).', { defaultText: 'tracing off' }),
  def('otel_traces_sampler_arg', 'any', 'Trace sampling ratio (0..1).'),
  def('otel_exporter_otlp_endpoint', 'string', 'OTLP endpoint.'),
  def('otel_exporter_otlp_traces_endpoint', 'string', 'OTLP endpoint for traces.'),
  def('otel_exporter_otlp_protocol', 'string', 'OTLP protocol (`grpc` or `http/protobuf`).'),
  def('otel_exporter_otlp_traces_protocol', 'string', 'OTLP protocol for traces.'),
  def('otel_exporter_otlp_headers', 'list', 'OTLP request headers (`k=v`).'),
  def('otel_exporter_otlp_traces_headers', 'list', 'OTLP request headers for traces.'),
  def('otel_exporter_otlp_timeout', 'any', 'OTLP export timeout (milliseconds).'),
  def('otel_exporter_otlp_traces_timeout', 'any', 'OTLP trace export timeout (milliseconds).'),
  def('otel_resource_attributes', 'list', 'OpenTelemetry resource attributes (`k=v`).'),
  def('otel_log_level', 'string', 'OpenTelemetry SDK log level.'),
  def('otel_bsp_schedule_delay', 'any', 'Batch span processor schedule delay.'),
  def('otel_bsp_max_export_batch_size', 'int', 'Batch span processor maximum batch size.'),
  def('otel_attribute_value_length_limit', 'int', 'Maximum span attribute value length.'),
  def('debug_address', 'string', 'Debug listener address.', { defaultText: 'random localhost port' }),
  def('health_check_addr', 'string', 'Health probe listener (/healthz, /readyz, /startupz, /status).', { default: '127.0.0.1:28080' }),
  def('health_check_systemd_disabled', 'bool', 'Disable systemd readiness notification.', { default: false }),
  def('databroker_storage_type', 'enum', 'Databroker storage backend.', { default: 'memory', values: ['memory', 'file', 'postgres'] }),
  def('databroker_storage_connection_string', 'string', 'Databroker storage connection string.', { file: true }),
  def('databroker_cluster_node_id', 'string', 'Raft cluster node id.'),
  def('databroker_cluster_leader_id', 'string', 'Raft cluster leader id.'),
  def('databroker_cluster_nodes', 'any', 'Raft cluster nodes.'),
  def('databroker_raft_bind_address', 'string', 'Raft bind address.'),
  def('dns_lookup_family', 'enum', 'Upstream DNS address family.', { default: 'V4_PREFERRED', values: ['AUTO', 'V4_PREFERRED', 'V4_ONLY', 'V6_ONLY', 'ALL'] }),
  def('dns_refresh_rate', 'duration', 'Upstream DNS refresh rate.'),
  def('dns_failure_refresh_rate', 'duration', 'Upstream DNS refresh rate after a failure.'),
  def('dns_query_timeout', 'duration', 'Upstream DNS query timeout.'),
  def('dns_query_tries', 'int', 'Upstream DNS query attempts.'),
  def('dns_udp_max_queries', 'int', 'Maximum queries per UDP DNS socket.', { default: 100 }),
  def('dns_use_tcp', 'bool', 'Use TCP for upstream DNS.', { default: false }),
  def('dns_resolvers', 'list', 'Upstream DNS resolvers.'),
  def('circuit_breaker_thresholds', 'object', 'Upstream circuit breaker limits for every route.', { children: CIRCUIT_BREAKER_FIELDS }),
  def('google_cloud_serverless_authentication_service_account', 'string', 'Service account for Google Cloud serverless ID tokens.', { defaultText: 'metadata server' }),
  def('ssh_address', 'string', 'Native SSH listener address.', { defaultText: 'SSH off' }),
  def('ssh_host_keys', 'list', 'SSH host keys (PEM).'),
  def('ssh_host_key_files', 'list', 'SSH host key files.'),
  def('ssh_host_keys_files', 'list', 'Also accepted spelling of `ssh_host_key_files`.'),
  def('ssh_user_ca_key', 'string', 'SSH user CA key.', { file: true }),
  def('ssh_rls_enabled', 'bool', 'Enable SSH route listing.', { default: false }),
  def('ssh_rls_additional_entries', 'any', 'Extra SSH route listing entries.'),
  def('mcp_allowed_client_id_domains', 'list', 'Domains allowed to host MCP client-id metadata documents.'),
  def('mcp_allowed_as_metadata_domains', 'list', 'Domains allowed for MCP authorization-server metadata.'),
  def('runtime_flags', 'map', 'Feature toggles (`name: true|false`).', { default: DEFAULT_RUNTIME_FLAGS, defaultText: 'see reference §2.2' }),
  def('installation_id', 'string', 'Installation label for telemetry.'),
  def('envoy_admin_address', 'string', 'Data-plane admin address (not hot reloaded).'),
  def('envoy_admin_access_log_path', 'string', 'Data-plane admin access log path (not hot reloaded).'),
  def('envoy_admin_profile_path', 'string', 'Data-plane admin profile path (not hot reloaded).'),
  def('envoy_bind_config_source_address', 'string', 'Source address for upstream connections (not hot reloaded).'),
  def('envoy_bind_config_freebind', 'bool', 'Use IP_FREEBIND for upstream connections (not hot reloaded).'),
  def('envoy_dynamic_extensions', 'any', 'Data-plane dynamic extensions (not hot reloaded).'),
  def('blob_storage', 'object', 'Session recording storage.', {
    children: [
      def('bucket_uri', 'string', 'Bucket URI.'),
      def('managed_prefix', 'string', 'Object key prefix.'),
    ],
  }),
  def('logo_url', 'url', 'Branding: logo on error and user pages.'),
  def('favicon_url', 'url', 'Branding: favicon.'),
  def('primary_color', 'string', 'Branding: primary colour.'),
  def('secondary_color', 'string', 'Branding: secondary colour.'),
  def('darkmode_primary_color', 'string', 'Branding: dark-mode primary colour.'),
  def('darkmode_secondary_color', 'string', 'Branding: dark-mode secondary colour.'),
  def('error_message_header', 'string', 'Branding: header line on error pages.'),
  def('idp_service_account', 'string', 'Directory sync: the identity provider API credential, JSON or base64 JSON; fields per provider in docs/directory.md (Pomerium before v0.20; Portcullis).', { file: true }),
  def('idp_refresh_directory_interval', 'duration', 'Directory sync: how often users and groups are read from the provider (at least 1m).', { default: '10m' }),
  def('idp_refresh_directory_timeout', 'duration', 'Directory sync: the time limit of one full read.', { default: '1m' }),
  def('scim', 'object', 'Portcullis only: a SCIM 2.0 endpoint at `/scim/v2` where Okta, Entra ID and others push users and groups (see docs/directory.md).', {
    env: false,
    children: [
      def('address', 'string', 'Listen address of the SCIM endpoint (plain HTTP; put a Portcullis route in front for TLS).', { env: false }),
      def('bearer_token_sha256', 'list', 'SHA-256 digests (hex) of the bearer tokens providers send; the tokens are never stored.', { env: false }),
    ],
  }),
  def('forward_auth', 'object', 'Portcullis only: a listener for nginx `auth_request`, Caddy `forward_auth` and Traefik `ForwardAuth` (see docs/delegated-authorization.md).', {
    env: false,
    children: [
      def('address', 'string', 'Listen address of the forward-auth endpoint (plain HTTP; keep it on a private network).', { env: false }),
      def('trusted_proxies', 'list', 'CIDRs of the proxies whose `X-Forwarded-*` headers are believed; calls from elsewhere are refused. Required unless `tls` is set.', { env: false }),
      def('tls', 'object', 'HTTPS with client certificates: `{cert_file, key_file, client_ca_file}`; only callers with a certificate from `client_ca_file` get through the handshake.', {
        env: false,
        children: [
          def('cert_file', 'string', "The listener's certificate (PEM file).", { env: false }),
          def('key_file', 'string', "The listener's private key (PEM file).", { env: false }),
          def('client_ca_file', 'string', 'CA of the client certificates that may call (PEM file).', { env: false }),
        ],
      }),
    ],
  }),
  def('ext_authz', 'object', 'Portcullis only: the Envoy `ext_authz` gRPC service (Envoy, Istio `CUSTOM`), see docs/delegated-authorization.md.', {
    env: false,
    children: [
      def('address', 'string', 'Listen address of the gRPC service (plaintext HTTP/2; keep it on a private network).', { env: false }),
      def('caller_token', 'string', 'The token callers send as `authorization: Bearer` metadata (at least 32 characters); prefer `caller_token_file`.', { env: false }),
      def('caller_token_file', 'string', 'File holding the caller token.', { env: false }),
      def('tls', 'object', 'mTLS: `{cert_file, key_file, client_ca_file}`; callers must present a certificate from `client_ca_file` (the token is then optional).', {
        env: false,
        children: [
          def('cert_file', 'string', "The service's certificate (PEM file).", { env: false }),
          def('key_file', 'string', "The service's private key (PEM file).", { env: false }),
          def('client_ca_file', 'string', 'CA of the client certificates that may call (PEM file).', { env: false }),
        ],
      }),
    ],
  }),
  def('device_types', 'list', 'Portcullis only: device types beside the built-in `any` and `enclave_only` (or replacing them): `{id, name, authenticator_attachment, user_verification, attestation_formats, attestation_roots, aaguids, approval_required}` (see docs/devices.md).', { items: 'object', env: false }),
  def('device_approvers', 'any', 'Portcullis only: a PPL policy; the signed-in users it allows may approve and revoke devices at `/.pomerium/devices` (see docs/devices.md).', { env: false }),
  def('builtin_idp_users_file', 'string', 'Portcullis only: users of the built-in OpenID provider (`idp_provider: builtin`): YAML with email, name, groups, claims, argon2id password_hash, optional totp_secret (see docs/builtin-idp.md).'),
  def('builtin_idp_address', 'string', 'Portcullis only: listen address of the built-in OpenID provider.', { default: '127.0.0.1:8081' }),
  def('workers', 'int', 'Portcullis only: number of data-plane worker processes (node:cluster); 0 = one per CPU core.', { default: 0, defaultText: '0 (one per CPU core)' }),
  def('routes', 'list', 'Routes (see the route settings table); env `ROUTES` is base64 YAML/JSON of a route list.', { items: 'object', env: 'ROUTES' }),
  def('policy', 'list', 'Older alias of `routes`; env `POLICY` is base64 YAML/JSON of a route list.', { items: 'object', env: 'POLICY' }),
]

const REDIRECT_FIELDS = [
  route('https_redirect', 'bool', 'Redirect to https.'),
  route('scheme_redirect', 'string', 'Redirect to this scheme.'),
  route('host_redirect', 'string', 'Redirect to this host.'),
  route('port_redirect', 'int', 'Redirect to this port.'),
  route('path_redirect', 'string', 'Redirect to this path.'),
  route('prefix_rewrite', 'string', 'Replace the matched prefix in the redirect.'),
  route('response_code', 'int', 'Redirect status code.', { default: 301 }),
  route('strip_query', 'bool', 'Drop the query string.', { default: false }),
]

/** Every route setting (reference §3), in reference order. */
export const ROUTE_SETTINGS: readonly SettingDescriptor[] = [
  route('from', 'string', 'External URL (https, http, tcp+https, udp+https or ssh) with a host and no path; `*` wildcards allowed.'),
  route('prefix', 'string', 'Match requests whose path starts with this prefix.', { defaultText: '/' }),
  route('path', 'string', 'Match this exact path.'),
  route('regex', 'string', 'Match the path against this regular expression (anchored).'),
  route('regex_priority_order', 'int', 'Sort key for regex routes (higher first).'),
  route('to', 'any', 'Upstream URL or list of URLs (http, https, h2c); `"url,weight"` sets a weight.'),
  route('redirect', 'object', 'Answer with a redirect instead of proxying.', { children: REDIRECT_FIELDS }),
  route('response', 'object', 'Answer with a fixed response `{status, body}` instead of proxying.', {
    children: [route('status', 'int', 'Status code.'), route('body', 'string', 'Body text.')],
  }),
  route('load_balancing_policy', 'enum', 'Upstream selection.', { default: 'ROUND_ROBIN', values: ['ROUND_ROBIN', 'RANDOM', 'LEAST_REQUEST', 'RING_HASH', 'MAGLEV'] }),
  route('health_checks', 'list', 'Active upstream health checks (`http_health_check` and `tcp_health_check`; grpc is not supported yet).', { items: 'object' }),
  route('outlier_detection', 'any', 'Passive upstream health (Envoy outlier detection fields).'),
  route('healthy_panic_threshold', 'int', 'Percentage of healthy upstreams below which all are used.'),
  route('circuit_breaker_thresholds', 'object', 'Per-route circuit breaker limits.', { children: CIRCUIT_BREAKER_FIELDS }),
  route('name', 'string', 'Display name (routes portal, metrics).'),
  route('description', 'string', 'Display description.'),
  route('logo_url', 'string', 'Display logo URL.'),
  route('prefix_rewrite', 'string', 'Replace the matched prefix or path before proxying.'),
  route('regex_rewrite_pattern', 'string', 'Path rewrite regex (exclusive with prefix_rewrite).'),
  route('regex_rewrite_substitution', 'string', 'Replacement for regex_rewrite_pattern (`\\1` groups).'),
  route('preserve_host_header', 'bool', 'Send the client Host header upstream.', { default: false }),
  route('host_rewrite', 'string', 'Literal upstream Host header.'),
  route('host_rewrite_header', 'string', 'Take the upstream Host from this request header.'),
  route('host_path_regex_rewrite_pattern', 'string', 'Derive the upstream Host from the path with this regex.'),
  route('host_path_regex_rewrite_substitution', 'string', 'Replacement for host_path_regex_rewrite_pattern.'),
  route('set_request_headers', 'map', 'Request headers to set (templates allowed).'),
  route('remove_request_headers', 'list', 'Request headers to remove.'),
  route('set_response_headers', 'map', 'Response headers merged over the global ones; a `disable` key sends none at all on this route.'),
  route('rewrite_response_headers', 'list', 'Response header prefix rewrites `{header, prefix, value}`.', { items: 'object' }),
  route('pass_identity_headers', 'bool', 'Send identity headers upstream.', { defaultText: '= global pass_identity_headers' }),
  route('jwt_groups_filter', 'list', 'Per-route groups allowlist for the `groups` claim.'),
  route('jwt_issuer_format', 'string', 'Format of the `iss` claim for this route.'),
  route('kubernetes_service_account_token', 'string', 'Kubernetes service account token for impersonation.', { file: true }),
  route('enable_google_cloud_serverless_authentication', 'bool', 'Add a Google Cloud serverless ID token.', { default: false }),
  route('bearer_token_format', 'enum', 'How bearer tokens are interpreted on this route.', { values: BEARER_TOKEN_FORMATS }),
  route('timeout', 'duration', 'Upstream request timeout (0 disables).', { defaultText: 'default_upstream_timeout (0 for websocket/spdy/k8s/tcp/udp routes)' }),
  route('idle_timeout', 'duration', 'Stream idle timeout (0 disables).', { default: '0' }),
  route('allow_websockets', 'bool', 'Allow WebSocket upgrades.', { default: false }),
  route('allow_spdy', 'bool', 'Allow SPDY/3.1 upgrades.', { default: false }),
  route('allow_ambiguous_paths', 'bool', 'Portcullis only: forward paths a lenient upstream could read as another path (`/..;/`, `%252e`, overlong UTF-8, `;` parameters that change the route or an `http_path` rule) instead of answering 400.', { default: false }),
  route('allow_upgrades', 'list', 'Allowed upgrade types (overrides the global list).', { defaultText: '= global allow_upgrades' }),
  route('tls_skip_verify', 'bool', 'Do not verify the upstream certificate.', { default: false }),
  route('tls_server_name', 'string', 'Deprecated alias of tls_upstream_server_name.'),
  route('tls_upstream_server_name', 'string', 'SNI and expected certificate name of the upstream.'),
  route('tls_downstream_server_name', 'string', 'SNI expected from clients.'),
  route('tls_custom_ca', 'string', 'Extra CA trusted for the upstream (base64 PEM).', { file: true, pem: true }),
  route('tls_client_cert', 'string', 'Client certificate presented upstream (base64 PEM).', { file: true, pem: true }),
  route('tls_client_key', 'string', 'Key of tls_client_cert (base64 PEM).', { file: true, pem: true }),
  route('tls_upstream_allow_renegotiation', 'bool', 'Allow upstream TLS renegotiation.', { default: false }),
  route('tls_downstream_client_ca', 'string', 'Deprecated per-route client CA (base64 PEM); use downstream_mtls.', { file: true, pem: true }),
  route('allow_public_unauthenticated_access', 'bool', 'Allow everyone, without login.', { default: false }),
  route('cors_allow_preflight', 'bool', 'Allow unauthenticated CORS preflight requests.', { default: false }),
  route('allow_any_authenticated_user', 'bool', 'Allow every logged-in user.', { default: false }),
  route('allowed_users', 'list', 'Allowed user ids or e-mail addresses.'),
  route('allowed_domains', 'list', 'Allowed e-mail domains.'),
  route('allowed_idp_claims', 'map', 'Allowed IdP claim values (`claim: [values]`).'),
  route('policy', 'any', 'Pomerium Policy Language rules (object or list).'),
  route('sub_policies', 'any', 'Enterprise sub-policies (rego).'),
  route('show_error_details', 'bool', 'Show policy evaluation details on error pages.', { default: false }),
  route('idp_client_id', 'string', 'Per-route OAuth client id.'),
  route('idp_client_secret', 'string', 'Per-route OAuth client secret.', { file: true }),
  route('idp_access_token_allowed_audiences', 'list', 'Per-route allowed `aud` values for IdP access tokens.'),
  route('depends_on', 'list', 'Up to 5 extra hosts that get a session cookie at login.'),
  route('upstream_tunnel', 'any', 'Serve the route through SSH reverse tunnels `{ssh_policy, ssh_policy_rego}`.'),
  route('mcp', 'any', 'Model Context Protocol server or client route.'),
  route('session_recording', 'any', 'SSH session recording.'),
]

/** Removed global keys (reference §1.5) and what replaces them. */
export const REMOVED_GLOBAL_KEYS: Readonly<Record<string, string>> = {
  client_ca: 'removed: use downstream_mtls.ca',
  client_ca_file: 'removed: use downstream_mtls.ca_file',
  idp_qps: 'removed: directory sync was removed',
  tracing_datadog_address: 'removed: use the otel_* tracing settings',
  tracing_zipkin_endpoint: 'removed: use the otel_* tracing settings',
  tracing_provider: 'removed: use otel_traces_exporter',
  tracing_sample_rate: 'removed: use otel_traces_sampler_arg',
  policy_file: 'removed: put routes in the config file under routes:',
}

/** Removed global key prefixes (any key starting with one is removed). */
export const REMOVED_GLOBAL_PREFIXES: Readonly<Record<string, string>> = {
  tracing_jaeger_: 'removed: use the otel_* tracing settings',
}

/** Removed route keys (reference §1.5). */
export const REMOVED_ROUTE_KEYS: Readonly<Record<string, string>> = {
  allowed_groups: 'removed: use a `groups` criterion in the route `policy` (PPL)',
  set_authorization_header: 'removed: use set_request_headers with ${pomerium.jwt} or pass_identity_headers',
}

/** The keys that a descriptor accepts in YAML: the key and, when it has one, `<key>_file`. */
export function acceptedKeys(descriptor: SettingDescriptor): string[] {
  return descriptor.file ? [descriptor.key, `${descriptor.key}_file`] : [descriptor.key]
}

/** Fields of one `health_checks` entry (Envoy HealthCheck subset). */
export const HEALTH_CHECK_SETTINGS: readonly SettingDescriptor[] = [
  route('timeout', 'duration', 'Time to wait for a health check response.', { default: '5s' }),
  route('interval', 'duration', 'Time between health checks.', { default: '10s' }),
  route('unhealthy_threshold', 'int', 'Failures before an upstream is marked unhealthy.', { default: 1 }),
  route('healthy_threshold', 'int', 'Successes before an upstream is marked healthy again.', { default: 1 }),
  route('initial_jitter', 'duration', 'Random delay before the first check.'),
  route('interval_jitter', 'duration', 'Random extra delay between checks.'),
  route('no_traffic_interval', 'duration', 'Interval while the upstream receives no traffic.'),
  route('always_log_health_check_success', 'bool', 'Log every successful check, not only state changes.', { default: false }),
  route('always_log_health_check_failures', 'bool', 'Log every failed check, not only state changes.', { default: false }),
  route('http_health_check', 'object', 'HTTP health check.', {
    children: [
      route('host', 'string', 'Host header of the check request.'),
      route('path', 'string', 'Path of the check request.', { default: '/' }),
      route('expected_statuses', 'list', 'Healthy status ranges `{start, end}` (end exclusive).', { items: 'object' }),
      route('codec_client_type', 'any', 'HTTP version of the check (HTTP1 or HTTP2).'),
    ],
  }),
  route('tcp_health_check', 'any', 'TCP health check `{send: {text: HEX}, receive: [{text: HEX}]}` (both optional: then a connection that opens is healthy).'),
  route('grpc_health_check', 'any', 'gRPC health check (not supported yet).'),
]
