/**
 * Which settings the running code acts on today. Every setting of Pomerium is accepted so that
 * an existing config loads; this table is the one source for the "In effect" column of the
 * generated reference, and for the list of accepted-but-inactive settings that start-up and
 * `validate` print, so that nobody mistakes "accepted" for "honoured".
 */
import { isDeepStrictEqual } from 'node:util'
import { coerceValue, isRecord } from './coerce.js'
import { indexPath, joinPath } from './issues.js'
import { DEFAULT_RUNTIME_FLAGS, GLOBAL_SETTINGS, HEALTH_CHECK_SETTINGS, ROUTE_SETTINGS } from './schema.js'
import type { SettingDescriptor } from './schema.js'

const GLOBAL_IN_EFFECT = new Set([
  'address',
  'insecure_server',
  'http_redirect_addr',
  'codec_type',
  'use_proxy_protocol',
  'certificate',
  'certificate_key',
  'certificates',
  'cookie_name',
  'cookie_secret',
  'cookie_domain',
  'cookie_http_only',
  'cookie_expire',
  'cookie_same_site',
  'shared_secret',
  'authenticate_service_url',
  'signout_redirect_url',
  'idp_provider',
  'idp_provider_url',
  'idp_client_id',
  'idp_client_secret',
  'idp_scopes',
  'idp_request_params',
  'idp_access_token_allowed_audiences',
  'bearer_token_format',
  'programmatic_redirect_domain_whitelist',
  'builtin_idp_users_file',
  'builtin_idp_address',
  'signing_key',
  'jwt_claims_headers',
  'jwt_groups_filter',
  'jwt_issuer_format',
  'downstream_mtls',
  'downstream_mtls.ca',
  'downstream_mtls.crl',
  'downstream_mtls.enforcement',
  'downstream_mtls.match_subject_alt_names',
  'downstream_mtls.max_verify_depth',
  'pass_identity_headers',
  'set_response_headers',
  'default_upstream_timeout',
  'timeout_read',
  'timeout_write',
  'timeout_idle',
  'allow_upgrades',
  'headers_with_underscores_action',
  'path_with_escaped_slashes_action',
  'merge_slashes',
  'normalize_path',
  'skip_xff_append',
  'xff_num_trusted_hops',
  'log_level',
  'access_log_fields',
  'authorize_log_fields',
  'dns_lookup_family',
  'circuit_breaker_thresholds',
  'circuit_breaker_thresholds.max_connections',
  'circuit_breaker_thresholds.max_pending_requests',
  'circuit_breaker_thresholds.max_requests',
  'workers',
  'device_types',
  'device_approvers',
  'idp_service_account',
  'idp_refresh_directory_interval',
  'idp_refresh_directory_timeout',
  'scim',
  'scim.address',
  'scim.bearer_token_sha256',
  'forward_auth',
  'forward_auth.address',
  'forward_auth.trusted_proxies',
  'forward_auth.tls',
  'forward_auth.tls.cert_file',
  'forward_auth.tls.key_file',
  'forward_auth.tls.client_ca_file',
  'ext_authz',
  'ext_authz.address',
  'ext_authz.caller_token',
  'ext_authz.caller_token_file',
  'ext_authz.tls',
  'ext_authz.tls.cert_file',
  'ext_authz.tls.key_file',
  'ext_authz.tls.client_ca_file',
  'services',
  'authenticate_internal_service_url',
  'authorize_service_url',
  'authorize_service_urls',
  'authorize_internal_service_url',
  'databroker_service_url',
  'databroker_service_urls',
  'databroker_internal_service_url',
  'databroker_storage_type',
  'databroker_storage_connection_string',
  'grpc_address',
  'grpc_insecure',
  'grpc_client_timeout',
  'certificate_authority',
  'override_certificate_name',
  'metrics_address',
  'metrics_basic_auth',
  'metrics_certificate',
  'metrics_certificate_key',
  'metrics_client_ca',
  'health_check_addr',
  'otel_traces_exporter',
  'otel_traces_sampler_arg',
  'otel_exporter_otlp_endpoint',
  'otel_exporter_otlp_traces_endpoint',
  'otel_exporter_otlp_protocol',
  'otel_exporter_otlp_traces_protocol',
  'otel_exporter_otlp_headers',
  'otel_exporter_otlp_traces_headers',
  'otel_exporter_otlp_timeout',
  'otel_exporter_otlp_traces_timeout',
  'otel_resource_attributes',
  'otel_bsp_schedule_delay',
  'otel_bsp_max_export_batch_size',
  'otel_attribute_value_length_limit',
  'routes',
  'policy',
  // Partly: only some flags are honoured (see RUNTIME_FLAGS_IN_EFFECT); the others are listed by name.
  'runtime_flags',
])

const ROUTE_IN_EFFECT = new Set([
  'from',
  'prefix',
  'path',
  'regex',
  'to',
  'redirect',
  ...['https_redirect', 'scheme_redirect', 'host_redirect', 'port_redirect', 'path_redirect', 'prefix_rewrite', 'response_code', 'strip_query'].map((k) => `redirect.${k}`),
  'response',
  'response.status',
  'response.body',
  'load_balancing_policy',
  'health_checks',
  'outlier_detection',
  'healthy_panic_threshold',
  'circuit_breaker_thresholds',
  'circuit_breaker_thresholds.max_connections',
  'circuit_breaker_thresholds.max_pending_requests',
  'circuit_breaker_thresholds.max_requests',
  'name',
  'description',
  'logo_url',
  'prefix_rewrite',
  'regex_rewrite_pattern',
  'regex_rewrite_substitution',
  'preserve_host_header',
  'host_rewrite',
  'host_rewrite_header',
  'host_path_regex_rewrite_pattern',
  'host_path_regex_rewrite_substitution',
  'set_request_headers',
  'remove_request_headers',
  'set_response_headers',
  'rewrite_response_headers',
  'pass_identity_headers',
  'timeout',
  'idle_timeout',
  'allow_websockets',
  'allow_spdy',
  'allow_upgrades',
  'allow_ambiguous_paths',
  'tls_skip_verify',
  'tls_server_name',
  'tls_upstream_server_name',
  'tls_custom_ca',
  'tls_client_cert',
  'tls_client_key',
  'allow_public_unauthenticated_access',
  'idp_client_id',
  'idp_client_secret',
  'idp_access_token_allowed_audiences',
  'bearer_token_format',
  'allow_any_authenticated_user',
  'cors_allow_preflight',
  'allowed_users',
  'allowed_domains',
  'allowed_idp_claims',
  'policy',
  'show_error_details',
  'jwt_groups_filter',
  'jwt_issuer_format',
  'kubernetes_service_account_token',
  'enable_google_cloud_serverless_authentication',
])

const HEALTH_CHECK_IN_EFFECT = new Set([
  'timeout',
  'interval',
  'unhealthy_threshold',
  'healthy_threshold',
  'http_health_check',
  'http_health_check.host',
  'http_health_check.path',
  'http_health_check.expected_statuses',
  'tcp_health_check',
])

/** Runtime flags whose value changes what Portcullis does; the others keep their default behaviour. */
const RUNTIME_FLAGS_IN_EFFECT = new Set(['routes_portal'])

/** What a user sees instead, where that is worth saying. */
const INSTEAD: Readonly<Record<string, string>> = {
  autocert: 'no ACME certificates: without certificate files, a self-signed fallback certificate is served',
  ssh_address: 'no SSH listener',
}

export type SettingScope = 'global' | 'route' | 'health_check'

/** True when the setting (dotted path for nested keys) changes what Portcullis does today. */
export function isInEffect(scope: SettingScope, key: string): boolean {
  const set = scope === 'global' ? GLOBAL_IN_EFFECT : scope === 'route' ? ROUTE_IN_EFFECT : HEALTH_CHECK_IN_EFFECT
  return set.has(key)
}

/** Every runtime flag marked in effect (its value is honoured). */
export function runtimeFlagsInEffect(): readonly string[] {
  return [...RUNTIME_FLAGS_IN_EFFECT]
}

/** True when `value` is what the setting's default means (durations compared in milliseconds). */
function isDefaultValue(d: SettingDescriptor, value: unknown): boolean {
  if (d.default === undefined) return false
  const def = coerceValue(d, d.default)
  const v = coerceValue(d, value)
  return def.ok && isDeepStrictEqual(v.ok ? v.value : value, def.value)
}

/**
 * Appends to `out` the key path of each setting in `values` that is written with a non-default
 * value but not in effect; recurses into nested settings of those that are in effect.
 */
function collect(
  values: Readonly<Record<string, unknown>>,
  descriptors: readonly SettingDescriptor[],
  scope: SettingScope,
  statusPrefix: string,
  path: string,
  out: string[],
): void {
  for (const d of descriptors) {
    const value = values[d.key]
    if (value === undefined || value === null) continue
    const key = `${statusPrefix}${d.key}`
    if (!isInEffect(scope, key)) {
      if (!isDefaultValue(d, value)) out.push(joinPath(path, d.key))
      continue
    }
    if (d.children && isRecord(value)) collect(value, d.children, scope, `${key}.`, joinPath(path, d.key), out)
  }
}

/** Key paths of the global settings written but not in effect (`raw`: the normalised globals). */
export function inactiveGlobalSettings(raw: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = []
  collect(raw, GLOBAL_SETTINGS, 'global', '', '', out)
  const flags = raw['runtime_flags']
  if (isRecord(flags)) {
    for (const [name, value] of Object.entries(flags)) {
      const known = DEFAULT_RUNTIME_FLAGS[name]
      // Unknown flags are reported as unknown keys; flags at their default behave as the default.
      if (known === undefined || value === known || RUNTIME_FLAGS_IN_EFFECT.has(name)) continue
      out.push(joinPath('runtime_flags', name))
    }
  }
  return out
}

/** Key paths of one route's settings written but not in effect (`raw`: the normalised route). */
export function inactiveRouteSettings(raw: Readonly<Record<string, unknown>>, path: string): string[] {
  const out: string[] = []
  collect(raw, ROUTE_SETTINGS, 'route', '', path, out)
  const checks = raw['health_checks']
  if (Array.isArray(checks)) {
    checks.forEach((entry, i) => {
      if (isRecord(entry)) collect(entry, HEALTH_CHECK_SETTINGS, 'health_check', '', indexPath(joinPath(path, 'health_checks'), i), out)
    })
  }
  return out
}

/** The one warning that lists every accepted setting not in effect; undefined when there is none. */
export function inactiveSettingsMessage(paths: readonly { readonly path: string; readonly env?: string | undefined }[]): string | undefined {
  if (paths.length === 0) return undefined
  const items = paths.map(({ path, env }) => {
    const instead = INSTEAD[path]
    return `${path}${env !== undefined ? ` (from ${env})` : ''}${instead !== undefined ? ` (${instead})` : ''}`
  })
  return `accepted but not in effect yet, Portcullis does not act on ${paths.length === 1 ? 'this setting' : `these ${paths.length} settings`} (see the In effect column of docs/reference/config.md): ${items.join(', ')}`
}

/** Every key marked in effect, for the test that checks each one names a real setting. */
export function inEffectKeys(scope: SettingScope): readonly string[] {
  return [...(scope === 'global' ? GLOBAL_IN_EFFECT : scope === 'route' ? ROUTE_IN_EFFECT : HEALTH_CHECK_IN_EFFECT)]
}
