/**
 * IPv4/IPv6 addresses and CIDR ranges for the `source_ip` criterion, without `node:net` (the
 * policy module has no Node dependencies) and without allocating per request.
 *
 * Ranges are compiled into 32-bit words and masks once. A client address is parsed into a shared
 * scratch buffer (evaluation is synchronous, so one buffer is enough). IPv4-mapped IPv6 addresses
 * (`::ffff:10.1.2.3`) are treated as the IPv4 address; otherwise the families are kept apart, as
 * Go's netip does: `::/0` does not contain 10.1.2.3. Parsing is strict (no leading zeros in IPv4
 * octets, no brackets or ports); anything malformed is not an address, so it is in no range.
 */

export interface CidrSet {
  /** Pairs of (network, mask) for IPv4 ranges. */
  readonly v4: Uint32Array
  /** Groups of 8 words (network[4], mask[4]) for IPv6 ranges. */
  readonly v6: Uint32Array
}

const scratch = new Uint32Array(4)
const groups = new Uint32Array(8)
const full = new Uint32Array(8)

/** Parses an IPv4 address into a 32-bit number, or -1. */
function parseV4(s: string, start: number, end: number): number {
  let value = 0
  let octets = 0
  let i = start
  while (i < end) {
    let n = 0
    let digits = 0
    const first = i
    while (i < end) {
      const c = s.charCodeAt(i)
      if (c < 48 || c > 57) break
      n = n * 10 + (c - 48)
      digits++
      i++
    }
    if (digits === 0 || digits > 3 || n > 255 || (digits > 1 && s.charCodeAt(first) === 48)) return -1
    value = value * 256 + n
    octets++
    if (i === end) break
    if (s.charCodeAt(i) !== 46 || octets === 4) return -1
    i++
    if (i === end) return -1
  }
  return octets === 4 ? value : -1
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/** Parses an IPv6 address into `out` (4 words); returns false when malformed. */
function parseV6(s: string, start: number, end: number, out: Uint32Array): boolean {
  // Up to 8 groups of 16 bits; `gap` is the group index where `::` stands, or -1.
  let count = 0
  let gap = -1
  let i = start
  if (i < end && s.charCodeAt(i) === 58) {
    if (i + 1 >= end || s.charCodeAt(i + 1) !== 58) return false
    gap = 0
    i += 2
  }
  while (i < end) {
    if (count === 8) return false
    // An embedded IPv4 address ends the string and takes two groups.
    let j = i
    while (j < end && hexValue(s.charCodeAt(j)) >= 0) j++
    if (j < end && s.charCodeAt(j) === 46) {
      if (count > 6) return false
      const v4 = parseV4(s, i, end)
      if (v4 < 0) return false
      groups[count++] = Math.floor(v4 / 65536)
      groups[count++] = v4 % 65536
      i = end
      break
    }
    if (j === i || j - i > 4) return false
    let n = 0
    for (let k = i; k < j; k++) n = n * 16 + hexValue(s.charCodeAt(k))
    groups[count++] = n
    i = j
    if (i === end) break
    if (s.charCodeAt(i) !== 58) return false
    i++
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false
      gap = count
      i++
    } else if (i === end) {
      return false
    }
  }
  if (gap < 0 && count !== 8) return false
  if (gap >= 0 && count === 8) return false
  if (gap < 0) {
    full.set(groups)
  } else {
    const tail = count - gap
    full.fill(0)
    for (let k = 0; k < gap; k++) full[k] = groups[k]!
    for (let k = 0; k < tail; k++) full[8 - tail + k] = groups[gap + k]!
  }
  for (let w = 0; w < 4; w++) out[w] = (full[2 * w]! * 65536 + full[2 * w + 1]!) >>> 0
  return true
}

/**
 * Parses an address into `out`: returns 4 (IPv4 in out[0]), 6 (IPv6 in out[0..3]) or 0 when
 * malformed. IPv4-mapped IPv6 becomes IPv4; a `%zone` suffix is ignored.
 */
export function parseAddress(s: string, out: Uint32Array, allowZone: boolean): 0 | 4 | 6 {
  let end = s.length
  if (end === 0 || end > 64) return 0
  if (s.indexOf(':') < 0) {
    const v4 = parseV4(s, 0, end)
    if (v4 < 0) return 0
    out[0] = v4
    return 4
  }
  const zone = s.indexOf('%')
  if (zone >= 0) {
    if (!allowZone || zone === end - 1) return 0
    end = zone
  }
  if (!parseV6(s, 0, end, out)) return 0
  if (out[0] === 0 && out[1] === 0 && out[2] === 0xffff) {
    out[0] = out[3] as number
    return 4
  }
  return 6
}

function prefixMask(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0
}

/** Compiles `10.0.0.0/8`, `192.168.1.5`, `2001:db8::/32`...; returns an error message for a bad entry. */
export function compileCidrs(entries: readonly string[]): CidrSet | { error: string; index: number } {
  const v4: number[] = []
  const v6: number[] = []
  const words = new Uint32Array(4)
  for (const [index, entry] of entries.entries()) {
    const slash = entry.indexOf('/')
    const address = slash < 0 ? entry : entry.slice(0, slash)
    let family = parseAddress(address, words, false)
    const mapped = family === 4 && address.includes(':')
    if (family === 0) return { error: `"${entry}" is not an IP address or CIDR range`, index }
    let bits = family === 4 ? 32 : 128
    if (slash >= 0) {
      const text = entry.slice(slash + 1)
      const max = mapped ? 128 : bits
      if (!/^(0|[1-9][0-9]{0,2})$/.test(text) || Number(text) > max) return { error: `"${entry}" has an invalid prefix length (0-${max})`, index }
      bits = Number(text)
      if (mapped) {
        // ::ffff:10.0.0.0/104 is 10.0.0.0/8; a shorter prefix covers IPv6 space outside the mapping.
        if (bits >= 96) bits -= 96
        else {
          family = 6
          words[3] = words[0] as number
          words[0] = 0
          words[1] = 0
          words[2] = 0xffff
        }
      }
    }
    if (family === 4) {
      const mask = prefixMask(bits)
      v4.push(((words[0] as number) & mask) >>> 0, mask)
    } else {
      const masks = [0, 1, 2, 3].map((w) => prefixMask(bits - 32 * w))
      v6.push(...[0, 1, 2, 3].map((w) => ((words[w] as number) & (masks[w] as number)) >>> 0), ...masks)
    }
  }
  return { v4: Uint32Array.from(v4), v6: Uint32Array.from(v6) }
}

/** Whether a client address is in any range of the set; false for malformed addresses. */
export function cidrsContain(set: CidrSet, address: string): boolean {
  const family = parseAddress(address, scratch, true)
  if (family === 4) {
    const ip = scratch[0] as number
    const v4 = set.v4
    for (let i = 0; i < v4.length; i += 2) if (((ip & (v4[i + 1] as number)) >>> 0) === v4[i]) return true
    return false
  }
  if (family === 6) {
    const v6 = set.v6
    for (let i = 0; i < v6.length; i += 8) {
      if (
        ((scratch[0]! & v6[i + 4]!) >>> 0) === v6[i] &&
        ((scratch[1]! & v6[i + 5]!) >>> 0) === v6[i + 1] &&
        ((scratch[2]! & v6[i + 6]!) >>> 0) === v6[i + 2] &&
        ((scratch[3]! & v6[i + 7]!) >>> 0) === v6[i + 3]
      ) {
        return true
      }
    }
  }
  return false
}
