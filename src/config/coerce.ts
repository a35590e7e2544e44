/**
 * Generic, kind-driven value checks. Like Pomerium's weakly-typed decoding, scalars written as
 * strings (`"true"`, `"8443"`) are accepted where a bool or number is expected, because
 * environment variables can only ever be strings.
 */
import { parseDuration } from './duration.js'
import type { SettingDescriptor, SettingKind } from './schema.js'

/** Result of coercing one value. */
export type Coerced = { ok: true; value: unknown } | { ok: false; expected: string }

/** True for a plain object (YAML mapping), not an array or null. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Splits a comma-separated env-style list, trimming blanks. */
export function splitList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

/** Parses `{"K":"V"}` JSON or `K1:V1,K2:V2` into a map (reference §2.1, `HEADERS`). */
export function parseKeyValues(text: string): Record<string, string> | undefined {
  const trimmed = text.trim()
  if (trimmed.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(trimmed)
      if (!isRecord(parsed)) return undefined
      const out: Record<string, string> = {}
      for (const [k, v] of Object.entries(parsed)) out[k] = String(v)
      return out
    } catch {
      return undefined
    }
  }
  const out: Record<string, string> = {}
  for (const part of splitList(trimmed)) {
    const colon = part.indexOf(':')
    if (colon <= 0) return undefined
    out[part.slice(0, colon).trim()] = part.slice(colon + 1).trim()
  }
  return out
}

function scalarString(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return undefined
}

const EXPECTED: Readonly<Record<Exclude<SettingKind, 'enum'>, string>> = {
  string: 'expected a string',
  bool: 'expected true or false',
  duration: 'expected a Go duration such as 30s, 1m30s, 500ms or 0',
  url: 'expected an absolute URL with a scheme and a host',
  int: 'expected a non-negative integer',
  list: 'expected a list of strings (or a comma-separated string)',
  map: 'expected a map of key: value',
  object: 'expected a map of settings',
  any: '',
}

/** Checks and normalises `value` for `descriptor` (durations become milliseconds). */
export function coerceValue(descriptor: SettingDescriptor, value: unknown): Coerced {
  const fail = (): Coerced => ({
    ok: false,
    expected:
      descriptor.kind === 'enum'
        ? `expected one of ${(descriptor.values ?? []).join(', ')}`
        : descriptor.kind === 'list' && descriptor.items === 'object'
          ? 'expected a list of maps'
          : EXPECTED[descriptor.kind],
  })
  switch (descriptor.kind) {
    case 'string': {
      const s = scalarString(value)
      return s === undefined ? fail() : { ok: true, value: s }
    }
    case 'bool': {
      if (typeof value === 'boolean') return { ok: true, value }
      const s = typeof value === 'string' ? value.trim().toLowerCase() : undefined
      if (s === 'true' || s === '1') return { ok: true, value: true }
      if (s === 'false' || s === '0') return { ok: true, value: false }
      return fail()
    }
    case 'duration': {
      if (value === 0) return { ok: true, value: 0 }
      const ms = typeof value === 'string' ? parseDuration(value) : undefined
      return ms === undefined ? fail() : { ok: true, value: ms }
    }
    case 'url': {
      const s = scalarString(value)
      if (s === undefined || !URL.canParse(s)) return fail()
      const url = new URL(s)
      return url.host === '' ? fail() : { ok: true, value: s }
    }
    case 'int': {
      const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value
      return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? { ok: true, value: n } : fail()
    }
    case 'list': {
      if (descriptor.items === 'object') {
        return Array.isArray(value) && value.every(isRecord) ? { ok: true, value } : fail()
      }
      if (typeof value === 'string') return { ok: true, value: splitList(value) }
      if (!Array.isArray(value)) return fail()
      const items = value.map(scalarString)
      return items.every((i) => i !== undefined) ? { ok: true, value: items } : fail()
    }
    case 'map': {
      if (typeof value === 'string') {
        const parsed = parseKeyValues(value)
        return parsed ? { ok: true, value: parsed } : fail()
      }
      return isRecord(value) ? { ok: true, value } : fail()
    }
    case 'enum': {
      const s = scalarString(value)?.trim().toLowerCase()
      const match = descriptor.values?.find((v) => v.toLowerCase() === s)
      return match === undefined ? fail() : { ok: true, value: match }
    }
    case 'object':
      return isRecord(value) ? { ok: true, value } : fail()
    case 'any':
      return { ok: true, value }
  }
}
