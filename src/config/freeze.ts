/** Deep-freezing of the loaded config, so no consumer can change what others see. */

import { KeyObject, X509Certificate } from 'node:crypto'
import { Pattern } from '../shared/pattern.js'

/**
 * Freezes `value` and everything reachable from it. URL and RegExp instances are left alone:
 * their state lives in internal slots that freezing does not protect, and a frozen RegExp
 * would throw when a global/sticky regex updates `lastIndex`. Buffers cannot be frozen (and
 * certificates and keys keep theirs in native handles): those of `downstream_mtls` are left as they are.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value
  if (value instanceof URL || value instanceof RegExp || value instanceof Pattern || Object.isFrozen(value)) return value
  if (ArrayBuffer.isView(value) || value instanceof X509Certificate || value instanceof KeyObject) return value
  Object.freeze(value)
  for (const v of Object.values(value as object) as unknown[]) deepFreeze(v)
  return value
}
