import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GLOBAL_SETTINGS, HEALTH_CHECK_SETTINGS, ROUTE_SETTINGS } from './schema.js'
import type { SettingDescriptor } from './schema.js'
import { inEffectKeys, runtimeFlagsInEffect } from './status.js'
import { DEFAULT_RUNTIME_FLAGS } from './schema.js'
import { formatIssue } from './format.js'
import { loadYaml, warnings } from './test-helpers.js'
import { loadConfig } from './load.js'

function paths(settings: readonly SettingDescriptor[], prefix = ''): Set<string> {
  const out = new Set<string>()
  for (const d of settings) {
    out.add(prefix + d.key)
    for (const c of d.children ? paths(d.children, `${prefix}${d.key}.`) : []) out.add(c)
  }
  return out
}

test('every setting marked in effect is a setting of the schema', () => {
  const tables = { global: paths(GLOBAL_SETTINGS), route: paths(ROUTE_SETTINGS), health_check: paths(HEALTH_CHECK_SETTINGS) } as const
  for (const scope of ['global', 'route', 'health_check'] as const) {
    for (const key of inEffectKeys(scope)) assert.ok(tables[scope].has(key), `${scope} setting ${key} is not in the schema`)
  }
})

test('every runtime flag marked in effect is a runtime flag', () => {
  for (const flag of runtimeFlagsInEffect()) assert.ok(flag in DEFAULT_RUNTIME_FLAGS, flag)
})

test('accepted settings that are not in effect are listed in one warning; defaults and in-effect settings are not', () => {
  const yaml = [
    'autocert: true',
    'autocert_use_staging: false', // its default: nothing to say
    'proxy_log_level: debug',
    'ssh_address: ":2222"',
    'dns_udp_max_queries: 100', // its default
    'runtime_flags: {config_hot_reload: false, routes_portal: false, mcp: true}',
    'routes:',
    '  - from: https://a.example.com',
    '    to: http://a',
    '    allow_public_unauthenticated_access: true',
    '    upstream_tunnel: {ssh_policy: {allow: {}}}',
    '    mcp: {server: {}}',
    '    health_checks: [{http_health_check: {path: /h}, no_traffic_interval: 60s}]',
    '',
  ].join('\n')
  const { config, issues } = loadYaml(yaml)
  assert.ok(config)
  const listed = warnings(issues).filter((i) => i.kind === 'not_in_effect')
  assert.equal(listed.length, 1)
  const message = listed[0]?.message ?? ''
  assert.match(
    message,
    /: autocert \(no ACME certificates: without certificate files, a self-signed fallback certificate is served\), proxy_log_level, ssh_address \(no SSH listener\), runtime_flags\.config_hot_reload, routes\[0\]\.upstream_tunnel, routes\[0\]\.mcp, routes\[0\]\.health_checks\[0\]\.no_traffic_interval$/,
  )
  const first = listed[0]
  assert.ok(first)
  assert.match(formatIssue(first), /config\.yaml: warning: accepted but not in effect yet/)
  // The same list from the environment names the variable.
  const env = loadConfig({ env: { AUTOCERT: 'true' } })
  assert.match(env.issues.find((i) => i.kind === 'not_in_effect')?.message ?? '', /: autocert \(from AUTOCERT\) \(no ACME/)
  // Nothing inactive, no warning.
  assert.deepEqual(loadYaml('autocert: false\n').issues, [])
})
