/**
 * Descriptor-driven validation of one mapping (the global settings, one route, or a nested
 * object): unknown and removed keys, kinds, `_file` variants, inline PEM and defaults.
 * Setting-specific rules run afterwards on the normalised result.
 */
import { acceptedKeys } from './schema.js'
import type { SettingDescriptor } from './schema.js'
import { coerceValue, isRecord } from './coerce.js'
import { decodePem, readReferencedFile } from './files.js'
import type { FileContext } from './files.js'
import { joinPath } from './issues.js'
import type { IssueCollector } from './issues.js'

/** Shared state of one load. */
export interface LoadContext extends FileContext {
  readonly issues: IssueCollector
}

/** Options for {@link normaliseObject}. */
export interface NormaliseOptions {
  /** Removed keys → message saying what replaces them. */
  readonly removed?: Readonly<Record<string, string>>
  /** Removed key prefixes → message. */
  readonly removedPrefixes?: Readonly<Record<string, string>>
  /** Fill in descriptor defaults for keys that are not set. */
  readonly applyDefaults: boolean
}

/** Edit distance, for "did you mean" hints on unknown keys. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] ?? 0
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] ?? 0
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length] ?? 0
}

/** ` (did you mean <key>?)` for the closest known key within a few edits, else ''. */
export function suggestion(key: string, known: readonly string[]): string {
  let best: string | undefined
  let bestScore = Infinity
  for (const k of known) {
    const d = distance(key, k)
    if (d < bestScore) {
      best = k
      bestScore = d
    }
  }
  return best !== undefined && bestScore <= Math.max(2, Math.floor(key.length / 4)) ? ` (did you mean ${best}?)` : ''
}

/**
 * Validates `input` against `descriptors`, reporting into `ctx.issues`. Returns the normalised
 * mapping: values coerced to their kind (durations in ms), `_file` contents read into the
 * plain key (the `_file` key keeps the absolute path), inline base64 PEM decoded to PEM text.
 */
export function normaliseObject(
  input: Readonly<Record<string, unknown>>,
  descriptors: readonly SettingDescriptor[],
  path: string,
  ctx: LoadContext,
  options: NormaliseOptions,
): Record<string, unknown> {
  const byKey = new Map<string, SettingDescriptor>()
  for (const d of descriptors) for (const k of acceptedKeys(d)) byKey.set(k, d)
  const out: Record<string, unknown> = {}

  for (const [key, value] of Object.entries(input)) {
    const keyPath = joinPath(path, key)
    const removed =
      options.removed?.[key] ??
      Object.entries(options.removedPrefixes ?? {}).find(([prefix]) => key.startsWith(prefix))?.[1]
    if (removed !== undefined) {
      ctx.issues.error(keyPath, undefined, removed, 'key')
      continue
    }
    const d = byKey.get(key)
    if (!d) {
      ctx.issues.warning(keyPath, undefined, `unknown setting, ignored${suggestion(key, [...byKey.keys()])}`, 'key', 'unknown_key')
      continue
    }
    // YAML `key:` with no value means "unset", as it does for Pomerium.
    if (value === null || value === undefined) continue
    if (key !== d.key) continue // `_file` variants are handled below, after the inline value.
    const c = coerceValue(d, value)
    if (!c.ok) {
      ctx.issues.error(keyPath, value, c.expected)
      continue
    }
    if (d.pem && typeof c.value === 'string') {
      const pem = decodePem(c.value)
      if (pem === undefined) {
        ctx.issues.error(keyPath, value, 'expected base64-encoded PEM')
        continue
      }
      out[key] = pem
    } else if (d.children && isRecord(c.value)) {
      out[key] = normaliseObject(c.value, d.children, keyPath, ctx, { applyDefaults: options.applyDefaults })
    } else {
      out[key] = c.value
    }
  }

  for (const d of descriptors) {
    if (!d.file) continue
    const fileKey = `${d.key}_file`
    const fileValue = input[fileKey]
    if (fileValue === null || fileValue === undefined) continue
    const filePath = joinPath(path, fileKey)
    if (typeof fileValue !== 'string' || fileValue.trim() === '') {
      ctx.issues.error(filePath, fileValue, 'expected a file path')
      continue
    }
    const read = readReferencedFile(ctx, fileValue.trim())
    out[fileKey] = read.path
    if ('error' in read) {
      ctx.issues.error(filePath, fileValue, read.error)
      continue
    }
    if (d.pem) {
      if (!read.text.includes('-----BEGIN')) {
        ctx.issues.error(filePath, fileValue, 'expected a PEM file')
        continue
      }
      out[d.key] = read.text
    } else {
      // Secrets in files usually end with a newline that is not part of the secret.
      out[d.key] = read.text.trim()
    }
  }

  if (options.applyDefaults) {
    for (const d of descriptors) {
      if (out[d.key] !== undefined || d.default === undefined) continue
      const c = coerceValue(d, d.default)
      if (c.ok) out[d.key] = c.value
    }
  }
  return out
}
