/**
 * The two process secrets (Pomerium docs: Global settings): `shared_secret` signs session handles and internal
 * calls and seals payloads between services; `cookie_secret` protects CSRF, state and PKCE
 * cookies. Both are 32 bytes, base64 in the config. When one is missing in all-in-one mode a
 * random one is made per process, as Pomerium does: sessions then do not survive a restart, and
 * a warning says so.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from './log.js'

export interface Secrets {
  readonly sharedSecret: Buffer
  readonly cookieSecret: Buffer
}

export const SECRET_BYTES = 32

/** Decodes a base64 (or base64url) 32-byte secret; undefined when absent or malformed. */
export function decodeSecret(text: unknown): Buffer | undefined {
  if (typeof text !== 'string' || text.trim() === '') return undefined
  const buf = Buffer.from(text.trim(), 'base64')
  return buf.length === SECRET_BYTES ? buf : undefined
}

/**
 * Resolves the secrets from the config's raw values. The loader has already refused malformed
 * ones; a missing one is generated (with a warning) so that all-in-one mode works out of the box.
 */
export function resolveSecrets(raw: Readonly<Record<string, unknown>>, logger: Logger): Secrets {
  const get = (key: 'shared_secret' | 'cookie_secret'): Buffer => {
    const decoded = decodeSecret(raw[key])
    if (decoded) return decoded
    logger.warn({ setting: key }, `${key} is not set: using a random one for this process; sessions will not survive a restart or be shared with other instances`)
    return randomBytes(SECRET_BYTES)
  }
  return { sharedSecret: get('shared_secret'), cookieSecret: get('cookie_secret') }
}
