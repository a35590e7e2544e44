/**
 * Password hashing for the built-in identity provider: argon2id (RFC 9106) from `@node-rs/argon2`
 * (the reference implementation's algorithm in Rust, prebuilt for each platform on the npm
 * registry: about 15 times faster than the pure-JavaScript one this replaced, at the same
 * parameters and with the same output; docs/performance.md), stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) so hashes made by other
 * tools (the `argon2` CLI, libsodium, Python's argon2-cffi) load too. Verification reads the cost
 * parameters from the string, so old hashes keep working after the defaults change.
 *
 * Derivations run on libuv's thread pool, so one does not stall other requests, and at most
 * {@link MAX_CONCURRENT} at a time: each one holds `m` KiB of memory, and a burst of logins must
 * not turn into a burst of allocations.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'

import { hashRaw } from '@node-rs/argon2'
import type { Options as NativeArgon2Options } from '@node-rs/argon2'

import { CodedError } from '../shared/errors.js'

export interface Argon2Params {
  /** Memory in KiB. */
  readonly m: number
  /** Iterations. */
  readonly t: number
  /** Lanes. */
  readonly p: number
}

/** OWASP's first recommendation for argon2id (Password Storage Cheat Sheet): 19 MiB, 2 passes. */
export const DEFAULT_ARGON2_PARAMS: Argon2Params = { m: 19_456, t: 2, p: 1 }

/**
 * Bounds on the parameters a hash may carry. A users file is trusted input, but a typo such as
 * `m=1945600` would otherwise make every sign-in allocate 1.9 GB.
 */
const LIMITS = { mMax: 1_048_576, tMax: 64, pMax: 64, saltMin: 8, saltMax: 64, hashMin: 16, hashMax: 64 }

/** Longer passwords are refused outright (the hash input is free to grow, the request body is not). */
export const MAX_PASSWORD_LENGTH = 1024

const SALT_BYTES = 16
const HASH_BYTES = 32
const ARGON2_VERSION = 0x13
/** `Algorithm.Argon2id` of @node-rs/argon2 (a `const enum`, which isolated modules cannot import). */
const ARGON2ID = 2 as NonNullable<NativeArgon2Options['algorithm']>

interface ParsedHash extends Argon2Params {
  readonly salt: Buffer
  readonly hash: Buffer
}

/**
 * Parses an argon2id PHC string; undefined when it is anything else (another algorithm, another
 * version, parameters outside the limits, bad base64). Never throws.
 */
export function parsePhc(phc: unknown): ParsedHash | undefined {
  if (typeof phc !== 'string' || phc.length > 512) return undefined
  const parts = phc.split('$')
  if (parts.length !== 6 || parts[0] !== '' || parts[1] !== 'argon2id' || parts[2] !== `v=${ARGON2_VERSION}`) return undefined
  const params = new Map<string, number>()
  for (const pair of (parts[3] ?? '').split(',')) {
    const m = /^([mtp])=([1-9][0-9]{0,9})$/.exec(pair)
    if (!m || params.has(m[1] as string)) return undefined
    params.set(m[1] as string, Number(m[2]))
  }
  const m = params.get('m')
  const t = params.get('t')
  const p = params.get('p')
  if (m === undefined || t === undefined || p === undefined || params.size !== 3) return undefined
  if (!paramsWithinLimits({ m, t, p })) return undefined
  const salt = decodeB64(parts[4] ?? '')
  const hash = decodeB64(parts[5] ?? '')
  if (!salt || salt.length < LIMITS.saltMin || salt.length > LIMITS.saltMax) return undefined
  if (!hash || hash.length < LIMITS.hashMin || hash.length > LIMITS.hashMax) return undefined
  return { m, t, p, salt, hash }
}

function paramsWithinLimits({ m, t, p }: Argon2Params): boolean {
  return (
    Number.isInteger(m) && Number.isInteger(t) && Number.isInteger(p) &&
    p >= 1 && p <= LIMITS.pMax && t >= 1 && t <= LIMITS.tMax && m >= 8 * p && m <= LIMITS.mMax
  )
}

/** PHC strings use standard base64 without padding; Node's decoder alone would skip junk characters. */
function decodeB64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]+$/.test(text)) return undefined
  const buf = Buffer.from(text, 'base64')
  return encodeB64(buf) === text ? buf : undefined
}

function encodeB64(buf: Uint8Array): string {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '')
}

/**
 * Passwords are compared as NFKC (NIST SP 800-63B 5.1.1.2), so the same password typed on a
 * phone and on a desktop, which may compose accents differently, is the same password.
 */
function passwordBytes(password: string): Uint8Array {
  return new TextEncoder().encode(password.normalize('NFKC'))
}

/** Thrown when too many derivations are already waiting: the caller should answer 503. */
export class PasswordHasherBusyError extends CodedError {
  readonly code = 'ERR_PASSWORD_CHECKS_BUSY'

  constructor() {
    super('too many password checks in progress')
    this.name = 'PasswordHasherBusyError'
  }
}

/** Derivations running at once; the rest wait in a queue of at most {@link MAX_QUEUED}. */
export const MAX_CONCURRENT = 2
const MAX_QUEUED = 256
let running = 0
const queue: (() => void)[] = []

async function withSlot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_CONCURRENT) {
    if (queue.length >= MAX_QUEUED) throw new PasswordHasherBusyError()
    await new Promise<void>((resolve) => queue.push(resolve))
  } else {
    running++
  }
  try {
    return await fn()
  } finally {
    const next = queue.shift()
    if (next) next() // hand the slot over
    else running--
  }
}

async function derive(password: string, salt: Uint8Array, params: Argon2Params, dkLen: number): Promise<Uint8Array> {
  return withSlot(() =>
    hashRaw(Buffer.from(passwordBytes(password)), {
      algorithm: ARGON2ID,
      salt: Buffer.from(salt),
      memoryCost: params.m,
      timeCost: params.t,
      parallelism: params.p,
      outputLen: dkLen,
    }),
  )
}

/**
 * Hashes a password into a PHC string with a fresh 16-byte salt.
 * @throws {RangeError} for parameters outside the accepted limits or an over-long password
 */
export async function hashPassword(password: string, params: Argon2Params = DEFAULT_ARGON2_PARAMS): Promise<string> {
  if (!paramsWithinLimits(params)) throw new RangeError(`argon2id parameters out of range: m=${params.m},t=${params.t},p=${params.p}`)
  if (password.length > MAX_PASSWORD_LENGTH) throw new RangeError(`passwords are at most ${MAX_PASSWORD_LENGTH} characters`)
  const salt = randomBytes(SALT_BYTES)
  const hash = await derive(password, salt, params, HASH_BYTES)
  return `$argon2id$v=${ARGON2_VERSION}$m=${params.m},t=${params.t},p=${params.p}$${encodeB64(salt)}$${encodeB64(hash)}`
}

/**
 * Whether `password` matches the PHC string, compared in constant time. A malformed or foreign
 * hash, or an over-long password, is simply false.
 * @throws {PasswordHasherBusyError} only when the queue of waiting checks is full
 */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const parsed = parsePhc(phc)
  if (!parsed || typeof password !== 'string' || password.length > MAX_PASSWORD_LENGTH) return false
  let derived: Uint8Array
  try {
    derived = await derive(password, parsed.salt, parsed, parsed.hash.length)
  } catch (err) {
    if (err instanceof PasswordHasherBusyError) throw err
    return false
  }
  return derived.length === parsed.hash.length && timingSafeEqual(derived, parsed.hash)
}

/**
 * Spends the time a real check with `params` would take, then returns false. Used when the email
 * is unknown or the account disabled, so response times do not tell which emails exist.
 * @throws {PasswordHasherBusyError} only when the queue of waiting checks is full
 */
export async function verifyDummy(password: string, params: Argon2Params = DEFAULT_ARGON2_PARAMS): Promise<false> {
  const safe = paramsWithinLimits(params) ? params : DEFAULT_ARGON2_PARAMS
  await derive(password.slice(0, MAX_PASSWORD_LENGTH), randomBytes(SALT_BYTES), safe, HASH_BYTES)
  return false
}
