/**
 * Environment overrides (reference §2.1): upper-cased key names, nested keys joined with `_`,
 * comma lists, `POLICY` and `ROUTES` as base64 YAML/JSON routes, `HEADERS` as response headers, and
 * `<NAME>_FILE` variants. Env wins over the file: an inline env value also hides a `_file`
 * variant written in the file, otherwise the file's `_file` would silently beat the env.
 */
import { parse as parseYaml } from 'yaml'
import type { ConfigIssue } from './types.js'
import { GLOBAL_SETTINGS } from './schema.js'
import type { SettingDescriptor } from './schema.js'
import { isRecord, parseKeyValues } from './coerce.js'
import { joinPath } from './issues.js'

/** The merged raw settings and, for each overridden key path, the env var it came from. */
export interface EnvApplied {
  readonly raw: Record<string, unknown>
  readonly origins: Map<string, string>
  readonly issues: ConfigIssue[]
}

function envIssue(name: string, message: string): ConfigIssue {
  return { severity: 'error', file: undefined, line: undefined, column: undefined, path: name, value: undefined, message }
}

/** Env text → the value the YAML would have held (structured kinds are parsed as YAML/JSON). */
function envValue(d: SettingDescriptor, text: string): { value: unknown } | { error: string } {
  if (d.kind === 'object' || d.kind === 'any' || (d.kind === 'list' && d.items === 'object')) {
    try {
      return { value: parseYaml(text) as unknown }
    } catch (err) {
      return { error: `expected YAML or JSON: ${(err as Error).message.split('\n')[0] ?? ''}` }
    }
  }
  // Lists, maps, bools, numbers and durations stay strings; coercion understands their env forms.
  return { value: text }
}

function applyOne(
  target: Record<string, unknown>,
  d: SettingDescriptor,
  env: Readonly<Record<string, string | undefined>>,
  parentPath: string,
  result: EnvApplied,
): void {
  if (d.env === undefined) return
  const path = joinPath(parentPath, d.key)
  const inline = env[d.env]
  if (inline !== undefined && inline !== '') {
    const v = envValue(d, inline)
    if ('error' in v) {
      result.issues.push(envIssue(d.env, v.error))
    } else {
      target[d.key] = v.value
      result.origins.set(path, d.env)
      delete target[`${d.key}_file`]
    }
  }
  const fromFile = d.file ? env[`${d.env}_FILE`] : undefined
  if (fromFile !== undefined && fromFile !== '') {
    target[`${d.key}_file`] = fromFile
    result.origins.set(`${path}_file`, `${d.env}_FILE`)
  }
}

/** Decodes `POLICY` or `ROUTES`: base64 of a YAML or JSON list of routes. */
function decodePolicy(text: string): { routes: unknown[] } | { error: string } {
  const decoded = Buffer.from(text.trim(), 'base64').toString('utf8')
  let parsed: unknown
  try {
    parsed = parseYaml(decoded)
  } catch {
    return { error: 'expected base64 of a YAML or JSON list of routes' }
  }
  return Array.isArray(parsed)
    ? { routes: parsed }
    : { error: 'expected base64 of a YAML or JSON list of routes' }
}

/** Applies environment overrides on top of the file's top-level mapping (which is not mutated). */
export function applyEnv(fileRaw: Record<string, unknown>, env: Readonly<Record<string, string | undefined>>): EnvApplied {
  const result: EnvApplied = { raw: { ...fileRaw }, origins: new Map(), issues: [] }
  const raw = result.raw

  const headers = env['HEADERS']
  if (headers !== undefined && headers !== '') {
    const map = parseKeyValues(headers)
    if (map) {
      raw['set_response_headers'] = map
      result.origins.set('set_response_headers', 'HEADERS')
    } else {
      result.issues.push(envIssue('HEADERS', 'expected JSON {"Name":"value"} or Name1:value1,Name2:value2'))
    }
  }

  for (const d of GLOBAL_SETTINGS) {
    // Pomerium binds an env var to both route lists (`POLICY`, `ROUTES`); each replaces its key.
    if (d.key === 'policy' || d.key === 'routes') {
      const name = d.env
      const text = name === undefined ? undefined : env[name]
      if (name === undefined || text === undefined || text === '') continue
      const decoded = decodePolicy(text)
      if ('error' in decoded) {
        result.issues.push(envIssue(name, decoded.error))
      } else {
        raw[d.key] = decoded.routes
        result.origins.set(d.key, name)
      }
      continue
    }
    // The whole object first (`DOWNSTREAM_MTLS` as JSON), then its fields (`DOWNSTREAM_MTLS_CA`).
    applyOne(raw, d, env, '', result)
    if (d.children) {
      const existing = raw[d.key]
      const nested: Record<string, unknown> = isRecord(existing) ? { ...existing } : {}
      const before = result.origins.size
      for (const child of d.children) applyOne(nested, child, env, d.key, result)
      if (result.origins.size > before) raw[d.key] = nested
    }
  }
  return result
}
