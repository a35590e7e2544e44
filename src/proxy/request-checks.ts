/**
 * Cheap checks on the request head, done once before routing (hostile-input case: header trust; host / route confusion; path normalisation).
 */
import type { HeadersWithUnderscoresAction } from '../config/types.js'

/** Headers that authorisation and forwarding must read the same single value of. */
const SINGLE_VALUED = new Set(['host', 'authorization', 'x-pomerium-authorization', 'content-length', 'transfer-encoding', ':authority'])

/** Returns why the header block is refused, or undefined when it is acceptable. */
export function screenHeaders(raw: readonly string[], underscores: HeadersWithUnderscoresAction): string | undefined {
  let seen: Set<string> | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (underscores === 'reject' && name.includes('_')) {
      return `header names containing "_" are not accepted (${name.slice(0, 64)})`
    }
    const lower = name.toLowerCase()
    if (SINGLE_VALUED.has(lower)) {
      seen ??= new Set()
      if (seen.has(lower)) return `the ${lower} header may appear only once`
      seen.add(lower)
    }
  }
  return undefined
}

export interface Authority {
  /** Lower case, no trailing dot, IPv6 in brackets. */
  readonly host: string
  readonly port: number | undefined
}

const HOST_CHARS = /^[a-z0-9.-]+$/

/** Parses a Host / :authority value; undefined when it is missing or malformed. */
export function parseAuthority(value: string | undefined): Authority | undefined {
  if (!value) return undefined
  let host = value.toLowerCase()
  let port: number | undefined
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    if (end === -1) return undefined
    const rest = host.slice(end + 1)
    host = host.slice(0, end + 1)
    if (rest !== '') {
      if (!/^:\d{1,5}$/.test(rest)) return undefined
      port = Number(rest.slice(1))
    }
    if (!/^\[[0-9a-f:.]+\]$/.test(host)) return undefined
  } else {
    const colon = host.indexOf(':')
    if (colon !== -1) {
      const p = host.slice(colon + 1)
      if (!/^\d{1,5}$/.test(p)) return undefined
      port = Number(p)
      host = host.slice(0, colon)
    }
    if (host.endsWith('.')) host = host.slice(0, -1)
    if (host === '' || !HOST_CHARS.test(host)) return undefined
  }
  if (port !== undefined && (port < 1 || port > 65535)) return undefined
  return { host, port }
}

/** The client address to trust, after `xff_num_trusted_hops` proxies in front of us. */
export function trustedClientIp(remote: string, xff: string | string[] | undefined, trustedHops: number): string {
  if (trustedHops <= 0 || xff === undefined) return remote
  const list = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  const candidate = list[list.length - trustedHops]?.trim()
  // A malformed entry is not trusted: fall back to the peer, never to a guess.
  if (candidate === undefined || !isIp(candidate)) return remote
  return candidate
}

function isIp(text: string): boolean {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) return text.split('.').every((o) => Number(o) <= 255)
  return /^[0-9a-f:]+$/i.test(text) && text.includes(':') && text.length <= 45
}

export function normaliseRemote(address: string | undefined): string {
  if (!address) return ''
  return address.startsWith('::ffff:') ? address.slice(7) : address
}
