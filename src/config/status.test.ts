import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GLOBAL_SETTINGS, HEALTH_CHECK_SETTINGS, ROUTE_SETTINGS } from './schema.js'
import type { SettingDescriptor } from './schema.js'
import { inEffectKeys } from './status.js'

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
