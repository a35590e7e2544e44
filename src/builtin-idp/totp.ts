/**
 * Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP) for the built-in identity
 * provider's second factor: HMAC-SHA1, 6 digits, 30-second steps, the step before and after the
 * current one accepted for clock drift. These are the values every authenticator app assumes when
 * an `otpauth://` URI says nothing else. A code is accepted at most once per user (RFC 6238 5.2):
 * after a successful check, codes of that step and of every earlier step are refused.
 *
 * The arithmetic (HMAC, dynamic truncation, base32, the key URI) is the `otpauth` package's; the
 * window, the constant-time comparison and the replay rule are ours.
 */
import { timingSafeEqual } from 'node:crypto'

import { HOTP, Secret, TOTP } from 'otpauth'

const DIGITS = 6
const PERIOD_SECONDS = 30

/** An otpauth secret holding a copy of `key` (a Buffer may be a view into a shared pool). */
function secretOf(key: Uint8Array): Secret {
  return new Secret({ buffer: Uint8Array.from(key).buffer })
}

/** RFC 4648 base32, upper case, without padding (as authenticator apps print secrets). */
export function base32Encode(bytes: Uint8Array): string {
  return secretOf(bytes).base32
}

/**
 * Decodes base32 as people copy it: case-insensitive, whitespace, `-` and trailing `=` ignored.
 * @throws {TypeError} on any other character
 */
export function base32Decode(text: string): Buffer {
  try {
    return Buffer.from(Secret.fromBase32(text.replace(/[\s-]/g, '')).bytes)
  } catch (cause) {
    throw new TypeError(`not base32: ${cause instanceof Error ? cause.message : 'unreadable'}`, { cause })
  }
}

type TotpAlgorithm = 'sha1' | 'sha256' | 'sha512'

interface TotpOptions {
  digits?: number
  stepSeconds?: number
  algorithm?: TotpAlgorithm
}

/** RFC 4226 HOTP value of `counter`, zero-padded to `digits`. */
export function hotp(key: Uint8Array, counter: number, digits = DIGITS, algorithm: TotpAlgorithm = 'sha1'): string {
  return HOTP.generate({ secret: secretOf(key), counter, digits, algorithm: algorithm.toUpperCase() })
}

/** The TOTP code at `timeMs`. */
export function totpAt(key: Uint8Array, timeMs: number, options: TotpOptions = {}): string {
  return TOTP.generate({
    secret: secretOf(key),
    timestamp: timeMs,
    digits: options.digits ?? DIGITS,
    period: options.stepSeconds ?? PERIOD_SECONDS,
    algorithm: (options.algorithm ?? 'sha1').toUpperCase(),
  })
}

/** A new random secret, base32: 20 bytes (160 bits), RFC 4226's recommended length for SHA-1. */
export function generateTotpSecret(bytes = 20): string {
  return new Secret({ size: bytes }).base32
}

interface TotpUriParams {
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
  return new TOTP({
    issuer,
    label: accountName,
    secret: Secret.fromBase32(secret.replace(/[\s=-]/g, '')),
    algorithm: 'SHA1',
    digits: DIGITS,
    period: PERIOD_SECONDS,
  }).toString()
}

interface TotpVerifierOptions {
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
  /** Steps accepted before and after the current one (default 1). */
  window?: number
}

/** Why a code was refused, for logs; the sign-in page says the same thing for all of them. */
type TotpResult = { ok: true } | { ok: false; reason: 'malformed' | 'wrong' | 'replayed' }

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
    const secretKey = secretOf(key)
    const current = TOTP.counter({ period: PERIOD_SECONDS, timestamp: this.now() })
    let matched: number | undefined
    // Not TOTP.validate: it stops at the first match, trying the current step first; this compares
    // every step in the window and keeps the earliest match (what the replay check records).
    for (let step = current - this.window; step <= current + this.window; step++) {
      const expected = Buffer.from(HOTP.generate({ secret: secretKey, counter: step, digits: DIGITS }))
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
