/**
 * Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP) for the built-in identity
 * provider's second factor: HMAC-SHA1, 6 digits, 30-second steps, the step before and after the
 * current one accepted for clock drift. These are the values every authenticator app assumes when
 * an `otpauth://` URI says nothing else. A code is accepted at most once per user (RFC 6238 5.2):
 * after a successful check, codes of that step and of every earlier step are refused.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** RFC 4648 base32, upper case, without padding (as authenticator apps print secrets). */
export function base32Encode(bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff
    bits += 8
    while (bits >= 5) {
      out += BASE32_ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += BASE32_ALPHABET[(value << (5 - bits)) & 31]
  return out
}

/**
 * Decodes base32 as people copy it: case-insensitive, spaces and trailing `=` ignored.
 * @throws {TypeError} on any other character
 */
export function base32Decode(text: string): Buffer {
  const clean = text.replace(/[\s-]/g, '').replace(/=+$/, '').toUpperCase()
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const char of clean) {
    const index = BASE32_ALPHABET.indexOf(char)
    if (index < 0) throw new TypeError(`not base32: unexpected character ${JSON.stringify(char)}`)
    value = ((value << 5) | index) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

export type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512'

export interface TotpOptions {
  digits?: number
  stepSeconds?: number
  algorithm?: TotpAlgorithm
}

/** RFC 4226 HOTP value of `counter`, zero-padded to `digits`. */
export function hotp(key: Uint8Array, counter: number, digits = 6, algorithm: TotpAlgorithm = 'sha1'): string {
  const message = Buffer.alloc(8)
  message.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac(algorithm, key).update(message).digest()
  const offset = (mac[mac.length - 1] as number) & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

/** The RFC 6238 time step of `timeMs`. */
export function totpStep(timeMs: number, stepSeconds = 30): number {
  return Math.floor(timeMs / 1000 / stepSeconds)
}

/** The TOTP code at `timeMs`. */
export function totpAt(key: Uint8Array, timeMs: number, options: TotpOptions = {}): string {
  return hotp(key, totpStep(timeMs, options.stepSeconds), options.digits, options.algorithm)
}

/** A new random secret, base32: 20 bytes (160 bits), RFC 4226's recommended length for SHA-1. */
export function generateTotpSecret(bytes = 20): string {
  return base32Encode(randomBytes(bytes))
}

export interface TotpUriParams {
  /** Base32 secret. */
  secret: string
  /** Shown in the authenticator app, usually the email. */
  accountName: string
  /** Who the code is for, e.g. "Portcullis" or the IdP's host name. */
  issuer: string
}

/**
 * The `otpauth://totp/...` URI authenticator apps import (as text or QR code), in the Key URI
 * format Google Authenticator defined and other apps follow. Parameters are spelled out even
 * where they are the defaults.
 */
export function totpUri({ secret, accountName, issuer }: TotpUriParams): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(accountName)}`
  const query = new URLSearchParams({
    secret: secret.replace(/[\s=]/g, '').toUpperCase(),
    issuer,
    algorithm: 'SHA1',
    digits: '6',
    period: '30',
  })
  return `otpauth://totp/${label}?${query.toString().replace(/\+/g, '%20')}`
}

export interface TotpVerifierOptions {
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
  /** Steps accepted before and after the current one (default 1). */
  window?: number
}

/** Why a code was refused, for logs; the sign-in page says the same thing for all of them. */
export type TotpResult = { ok: true } | { ok: false; reason: 'malformed' | 'wrong' | 'replayed' }

/**
 * Checks codes and remembers, per user, the last step a code was accepted for. Memory is bounded by
 * the number of users who passed a check within the window: older entries are dropped.
 */
export class TotpVerifier {
  private readonly now: () => number
  private readonly window: number
  private readonly lastStep = new Map<string, number>()

  constructor(options: TotpVerifierOptions = {}) {
    this.now = options.now ?? Date.now
    this.window = options.window ?? 1
  }

  /**
   * Checks `code` for `userKey` (any stable id, e.g. the subject) against the base32 or raw secret.
   * Every candidate step is computed and compared, so timing does not tell which one matched.
   */
  verify(userKey: string, secret: string | Uint8Array, code: string): TotpResult {
    const digits = code.replace(/\s/g, '')
    if (!/^[0-9]{6}$/.test(digits)) return { ok: false, reason: 'malformed' }
    let key: Uint8Array
    try {
      key = typeof secret === 'string' ? base32Decode(secret) : secret
    } catch {
      return { ok: false, reason: 'wrong' }
    }
    if (key.length === 0) return { ok: false, reason: 'wrong' }
    const current = totpStep(this.now())
    let matched: number | undefined
    for (let step = current - this.window; step <= current + this.window; step++) {
      const expected = Buffer.from(hotp(key, step))
      if (timingSafeEqual(expected, Buffer.from(digits)) && matched === undefined) matched = step
    }
    this.prune(current)
    if (matched === undefined) return { ok: false, reason: 'wrong' }
    const last = this.lastStep.get(userKey)
    if (last !== undefined && matched <= last) return { ok: false, reason: 'replayed' }
    this.lastStep.set(userKey, matched)
    return { ok: true }
  }

  /** Entries for steps no longer acceptable cannot refuse anything: drop them. */
  private prune(current: number): void {
    if (this.lastStep.size < 1000) return
    for (const [user, step] of this.lastStep) {
      if (step < current - this.window) this.lastStep.delete(user)
    }
  }
}
