/**
 * Sealed payloads between services over the browser (Pomerium docs: Communication & trust): XChaCha20-Poly1305 under a
 * 32-byte key, random 24-byte nonce, optional associated data binding a payload to its purpose
 * (a session handed to one route's callback cannot be replayed as another kind of payload).
 * Format: base64url(nonce || ciphertext || tag).
 */
import { randomBytes } from 'node:crypto'
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'

const NONCE_BYTES = 24
/** Sealed values ride in URLs and cookies; anything longer is refused before any work. */
const MAX_SEALED_LENGTH = 16 * 1024

export function seal(plaintext: string, key: Buffer, associatedData = ''): string {
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = xchacha20poly1305(key, nonce, Buffer.from(associatedData))
  const sealed = cipher.encrypt(Buffer.from(plaintext, 'utf8'))
  return Buffer.concat([nonce, sealed]).toString('base64url')
}

/** Opens a sealed value; undefined when it was not sealed with this key and associated data. */
export function open(sealed: string, key: Buffer, associatedData = ''): string | undefined {
  if (sealed.length > MAX_SEALED_LENGTH || !/^[A-Za-z0-9_-]+$/.test(sealed)) return undefined
  const raw = Buffer.from(sealed, 'base64url')
  if (raw.length < NONCE_BYTES + 16) return undefined
  try {
    const cipher = xchacha20poly1305(key, raw.subarray(0, NONCE_BYTES), Buffer.from(associatedData))
    return Buffer.from(cipher.decrypt(raw.subarray(NONCE_BYTES))).toString('utf8')
  } catch {
    return undefined
  }
}
