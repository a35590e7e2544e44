/** Public API of the config system. */
export { loadConfig } from './load.js'
export type { LoadOptions, LoadResult } from './load.js'
export { ConfigSource } from './source.js'
export type { ConfigListener, ConfigSourceOptions } from './source.js'
export { formatIssue, formatIssues } from './format.js'
export type { FormatOptions } from './format.js'
export { parseDuration, formatDuration } from './duration.js'
export { parseAddress } from './address.js'
export type { ListenAddress } from './address.js'
export {
  ACCESS_LOG_FIELDS,
  AUTHORIZE_LOG_FIELDS,
  DEFAULT_ACCESS_LOG_FIELDS,
  DEFAULT_AUTHORIZE_LOG_FIELDS,
  DEFAULT_RUNTIME_FLAGS,
  GLOBAL_SETTINGS,
  ROUTE_SETTINGS,
  REMOVED_GLOBAL_KEYS,
  REMOVED_ROUTE_KEYS,
} from './schema.js'
export type { SettingDescriptor, SettingKind } from './schema.js'
export type {
  Config,
  ConfigIssue,
  ConfigSourceInfo,
  DirectResponse,
  EscapedSlashesAction,
  HeadersWithUnderscoresAction,
  HealthCheckConfig,
  HttpHealthCheck,
  LoadBalancingPolicy,
  RedirectConfig,
  RewriteResponseHeader,
  RouteConfig,
  RouteFrom,
  ServerCertificate,
  UpstreamTarget,
  UpstreamTlsConfig,
} from './types.js'
