/**
 * QUIC variable-length integers (RFC 9000 section 16) and the HTTP capsule protocol (RFC 9297
 * section 3.2) that CONNECT-UDP (RFC 9298) tunnels speak over an HTTP/1.1 upgrade or an HTTP/2
 * stream. Pure (it imports only the error registry), used by the proxy and the client.
 *
 * A varint's two most significant bits give its length (00 = 1, 01 = 2, 10 = 4, 11 = 8 bytes), the
 * other bits the value, network byte order; so values reach 2^62-1. JavaScript numbers hold
 * integers exactly only up to 2^53-1 (Number.MAX_SAFE_INTEGER): {@link readVarint} refuses larger
 * values, {@link readVarintBig} reads the whole range as a bigint.
 *
 * A capsule is `Type (varint), Length (varint), Value (Length bytes)`. The DATAGRAM capsule
 * (type 0x00) carries an HTTP Datagram; in CONNECT-UDP its value is a varint context id followed
 * by the payload, and context id 0 means "the payload is one UDP datagram" (RFC 9298 section 4).
 */
import { CodedError } from './errors.js'

/** The largest varint value: 2^62 - 1. */
export const MAX_VARINT = (1n << 62n) - 1n

/** The DATAGRAM capsule type (RFC 9297 section 3.5). */
export const CAPSULE_DATAGRAM = 0x00

/** The context id of a UDP payload in a CONNECT-UDP datagram (RFC 9298 section 4). */
export const UDP_CONTEXT_ID = 0

/** The largest UDP payload a CONNECT-UDP datagram may carry (RFC 9298 section 5: 65,527 bytes). */
export const MAX_UDP_PAYLOAD = 65_527

/** The default bound on one capsule's declared length: a full UDP payload and room for headers. */
export const DEFAULT_MAX_CAPSULE_LENGTH = 65_535 + 16

/** A malformed varint or capsule (truncated, over the bound, above the safe integer range). */
export class CapsuleError extends CodedError {
  override readonly name = 'CapsuleError'
  readonly code = 'ERR_CAPSULE_MALFORMED'
}

/** The encoded length of a varint's value by its first byte (1, 2, 4 or 8). */
export function varintLength(firstByte: number): 1 | 2 | 4 | 8 {
  const prefix = firstByte >> 6
  return prefix === 0 ? 1 : prefix === 1 ? 2 : prefix === 2 ? 4 : 8
}

/** The shortest encoded length of `value` (a non-negative integer up to 2^62-1). */
export function varintSize(value: number | bigint): 1 | 2 | 4 | 8 {
  const v = checkVarintValue(value)
  if (v <= 63n) return 1
  if (v <= 16_383n) return 2
  if (v <= 1_073_741_823n) return 4
  return 8
}

function checkVarintValue(value: number | bigint): bigint {
  if (typeof value === 'number' && (!Number.isSafeInteger(value) || value < 0)) {
    throw new CapsuleError(`varint value must be a non-negative safe integer, got ${value}`)
  }
  const v = BigInt(value)
  if (v < 0n || v > MAX_VARINT) throw new CapsuleError(`varint value out of range: ${v}`)
  return v
}

/** Writes `value` in its shortest form at `offset`; returns the offset after it. */
export function writeVarint(target: Uint8Array, offset: number, value: number | bigint): number {
  const size = varintSize(value)
  if (offset < 0 || offset + size > target.length) throw new RangeError('varint does not fit the target')
  if (size === 8) {
    let v = BigInt(value)
    for (let i = 7; i >= 0; i--) {
      target[offset + i] = Number(v & 0xffn)
      v >>= 8n
    }
    target[offset] = (target[offset] ?? 0) | 0xc0
    return offset + 8
  }
  const n = Number(value)
  if (size === 1) {
    target[offset] = n
  } else if (size === 2) {
    target[offset] = 0x40 | (n >> 8)
    target[offset + 1] = n & 0xff
  } else {
    target[offset] = 0x80 | (n >>> 24)
    target[offset + 1] = (n >>> 16) & 0xff
    target[offset + 2] = (n >>> 8) & 0xff
    target[offset + 3] = n & 0xff
  }
  return offset + size
}

/** `value` as a varint in its shortest form. */
export function encodeVarint(value: number | bigint): Buffer {
  const out = Buffer.alloc(varintSize(value))
  writeVarint(out, 0, value)
  return out
}

/** A varint read from a buffer: its value and the offset after it. */
export interface VarintRead<T> {
  readonly value: T
  readonly next: number
}

/**
 * The varint at `offset` as a bigint (any form, the whole range), or undefined when `source` ends
 * before it does.
 */
export function readVarintBig(source: Uint8Array, offset = 0): VarintRead<bigint> | undefined {
  const first = source[offset]
  if (first === undefined) return undefined
  const size = varintLength(first)
  if (offset + size > source.length) return undefined
  let v = BigInt(first & 0x3f)
  for (let i = 1; i < size; i++) v = (v << 8n) | BigInt(source[offset + i] ?? 0)
  return { value: v, next: offset + size }
}

/**
 * The varint at `offset` as a number (any form), or undefined when `source` ends before it does.
 * Throws {@link CapsuleError} for a value above Number.MAX_SAFE_INTEGER.
 */
export function readVarint(source: Uint8Array, offset = 0): VarintRead<number> | undefined {
  const first = source[offset]
  if (first === undefined) return undefined
  const size = varintLength(first)
  if (offset + size > source.length) return undefined
  if (size === 1) return { value: first & 0x3f, next: offset + 1 }
  if (size === 2) return { value: ((first & 0x3f) << 8) | (source[offset + 1] ?? 0), next: offset + 2 }
  let hi = 0
  let lo = 0
  if (size === 4) {
    lo = (first & 0x3f) * 0x1000000 + (((source[offset + 1] ?? 0) << 16) | ((source[offset + 2] ?? 0) << 8) | (source[offset + 3] ?? 0))
    return { value: lo, next: offset + 4 }
  }
  hi = (first & 0x3f) * 0x1000000 + (((source[offset + 1] ?? 0) << 16) | ((source[offset + 2] ?? 0) << 8) | (source[offset + 3] ?? 0))
  lo = (source[offset + 4] ?? 0) * 0x1000000 + (((source[offset + 5] ?? 0) << 16) | ((source[offset + 6] ?? 0) << 8) | (source[offset + 7] ?? 0))
  // hi * 2^32 + lo is exact while hi < 2^21 (2^53 / 2^32); check the sum itself for the edge.
  if (hi >= 0x200000) throw new CapsuleError('varint value above Number.MAX_SAFE_INTEGER')
  const value = hi * 0x100000000 + lo
  if (!Number.isSafeInteger(value)) throw new CapsuleError('varint value above Number.MAX_SAFE_INTEGER')
  return { value, next: offset + 8 }
}

/**
 * One capsule. `type` is a number when it is a safe integer and a bigint above that (such types
 * are never ones we know, e.g. large reserved "grease" types, and are skipped like any unknown).
 */
export interface Capsule {
  readonly type: number | bigint
  readonly value: Buffer
}

/** One capsule's bytes: type, length, value. */
export function encodeCapsule(type: number | bigint, value: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(varintSize(type) + varintSize(value.length) + value.length)
  let at = writeVarint(out, 0, type)
  at = writeVarint(out, at, value.length)
  out.set(value, at)
  return out
}

/** A DATAGRAM capsule carrying one UDP payload (context id 0). */
export function encodeDatagram(payload: Uint8Array): Buffer {
  const valueLength = 1 + payload.length
  const out = Buffer.allocUnsafe(1 + varintSize(valueLength) + valueLength)
  out[0] = CAPSULE_DATAGRAM
  let at = writeVarint(out, 1, valueLength)
  out[at++] = UDP_CONTEXT_ID
  out.set(payload, at)
  return out
}

/**
 * A DATAGRAM capsule's value split into its context id and payload (a view, no copy). The context
 * id is a number when safe and a bigint above that. Throws {@link CapsuleError} when the value does
 * not start with a whole varint.
 */
export function decodeDatagram(value: Uint8Array): { contextId: number | bigint; payload: Buffer } {
  const id = readVarintBig(value, 0)
  if (id === undefined) throw new CapsuleError('DATAGRAM capsule without a whole context id')
  const buffer = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  const contextId = id.value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id.value) : id.value
  return { contextId, payload: buffer.subarray(id.next) }
}

export interface CapsuleParserOptions {
  /** The largest declared value length accepted (default {@link DEFAULT_MAX_CAPSULE_LENGTH}). */
  readonly maxLength?: number
}

/**
 * Turns a byte stream into capsules incrementally: `push` each chunk as it arrives and get the
 * capsules it completed. It buffers at most one partial capsule (its header and at most
 * `maxLength` value bytes); a declared length above `maxLength` throws {@link CapsuleError}, as does
 * `end()` when the stream stopped inside a capsule. After a throw the parser is unusable.
 */
export class CapsuleParser {
  private readonly maxLength: number
  private chunks: Buffer[] = []
  private buffered = 0
  /** Bytes the capsule being assembled needs in all (0 while its header is incomplete). */
  private need = 0
  private failed = false

  constructor(options: CapsuleParserOptions = {}) {
    this.maxLength = options.maxLength ?? DEFAULT_MAX_CAPSULE_LENGTH
  }

  /** Bytes held of a capsule not yet complete. */
  get pendingBytes(): number {
    return this.buffered
  }

  /** The capsules `chunk` completed, in order (value buffers are views of the input). */
  push(chunk: Uint8Array): Capsule[] {
    if (this.failed) throw new CapsuleError('capsule parser already failed')
    if (chunk.length === 0) return []
    const piece = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    this.chunks.push(piece)
    this.buffered += piece.length
    // The partial capsule's header is known and its value still incomplete: keep the chunk
    // without copying (so a capsule arriving in many small chunks is joined once, not each time).
    if (this.buffered < this.need) return []
    const out: Capsule[] = []
    let data = this.chunks.length === 1 ? piece : Buffer.concat(this.chunks, this.buffered)
    let at = 0
    this.need = 0
    for (;;) {
      const header = this.header(data, at)
      if (header === undefined) break
      if (header.end > data.length) {
        this.need = header.end - at
        break
      }
      out.push({ type: header.type, value: data.subarray(header.next, header.end) })
      at = header.end
    }
    if (at > 0) data = data.subarray(at)
    this.chunks = data.length > 0 ? [data] : []
    this.buffered = data.length
    return out
  }

  /** The stream ended: throws {@link CapsuleError} when it ended inside a capsule. */
  end(): void {
    if (this.buffered > 0) {
      this.failed = true
      throw new CapsuleError(`stream ended inside a capsule (${this.buffered} bytes pending)`)
    }
  }

  /** The header at `at` (undefined while incomplete); throws for a length over the bound. */
  private header(data: Buffer, at: number): { type: number | bigint; next: number; end: number } | undefined {
    const type = readVarintBig(data, at)
    if (type === undefined) return undefined
    const length = readVarintBig(data, type.next)
    if (length === undefined) return undefined
    if (length.value > BigInt(this.maxLength)) {
      this.failed = true
      throw new CapsuleError(`capsule length ${length.value} is over the bound of ${this.maxLength}`)
    }
    const typeValue = type.value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(type.value) : type.value
    return { type: typeValue, next: length.next, end: length.next + Number(length.value) }
  }
}
