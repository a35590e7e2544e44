/**
 * Which settings the running code acts on today. Every setting of Pomerium is accepted so that
 * an existing config loads; the generated reference marks the ones that already take effect,
 * so that nobody mistakes "accepted" for "honoured".
 */

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
  'dns_lookup_family',
  'circuit_breaker_thresholds',
  'circuit_breaker_thresholds.max_connections',
  'workers',
  'routes',
  'policy',
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
  'load_balancing_policy',
  'health_checks',
  'outlier_detection',
  'healthy_panic_threshold',
  'circuit_breaker_thresholds',
  'circuit_breaker_thresholds.max_connections',
  'name',
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
])

const HEALTH_CHECK_IN_EFFECT = new Set(['timeout', 'interval', 'unhealthy_threshold', 'healthy_threshold', 'http_health_check'])

export type SettingScope = 'global' | 'route' | 'health_check'

/** True when the setting (dotted path for nested keys) changes what Portcullis does today. */
export function isInEffect(scope: SettingScope, key: string): boolean {
  const set = scope === 'global' ? GLOBAL_IN_EFFECT : scope === 'route' ? ROUTE_IN_EFFECT : HEALTH_CHECK_IN_EFFECT
  return set.has(key)
}

/** Every key marked in effect, for the test that checks each one names a real setting. */
export function inEffectKeys(scope: SettingScope): readonly string[] {
  return [...(scope === 'global' ? GLOBAL_IN_EFFECT : scope === 'route' ? ROUTE_IN_EFFECT : HEALTH_CHECK_IN_EFFECT)]
}
