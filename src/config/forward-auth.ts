/**
 * `forward_auth` (docs/delegated-authorization.md): a listener on which nginx `auth_request`,
 * Caddy `forward_auth` and Traefik `ForwardAuth` ask Portcullis about the requests they forward.
 * The original request travels in `X-Forwarded-*` headers, which anybody can write: they are
 * believed only from `trusted_proxies`, which is therefore required.
 */
import { compileCidrs } from '../policy/index.js'
import { parseAddress } from './address.js'
import type { ListenAddress } from './address.js'
import type { IssueCollector } from './issues.js'

export interface ForwardAuthSettings {
  readonly address: ListenAddress
  /** CIDRs of the fronting proxies (`127.0.0.1/32`, `10.0.0.0/8`); a bare address is one host. */
  readonly trustedProxies: readonly string[]
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function checkForwardAuth(raw: Readonly<Record<string, unknown>>, issues: IssueCollector): ForwardAuthSettings | undefined {
  const fa = raw['forward_auth']
  if (fa === undefined || fa === null) return undefined
  if (!isRecord(fa)) {
    issues.error('forward_auth', fa, 'expected {address, trusted_proxies}')
    return undefined
  }
  let ok = true
  const addressText = fa['address']
  const address = typeof addressText === 'string' ? parseAddress(addressText) : undefined
  if (!address) {
    issues.error('forward_auth.address', addressText, 'expected a listen address such as 127.0.0.1:8090')
    ok = false
  }
  const list = fa['trusted_proxies']
  const proxies = Array.isArray(list) && list.every((x): x is string => typeof x === 'string') ? list : undefined
  if (!proxies || proxies.length === 0) {
    issues.error(
      'forward_auth.trusted_proxies',
      list,
      'required: the addresses (CIDRs) of the proxies that call forward_auth; X-Forwarded-* headers from anyone else could name any host and path',
    )
    ok = false
  } else {
    const compiled = compileCidrs(proxies)
    if ('error' in compiled) {
      issues.error(`forward_auth.trusted_proxies[${compiled.index}]`, proxies[compiled.index], compiled.error)
      ok = false
    }
  }
  return ok && address && proxies ? { address, trustedProxies: proxies } : undefined
}
