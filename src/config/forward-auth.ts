/**
 * `forward_auth` (docs/delegated-authorization.md): a listener on which nginx `auth_request`,
 * Caddy `forward_auth` and Traefik `ForwardAuth` ask Portcullis about the requests they forward.
 * The original request travels in `X-Forwarded-*` headers, which anybody can write: they are
 * believed only from `trusted_proxies`, or from callers with a client certificate (`tls`); one of
 * the two is required.
 */
import { compileCidrs } from '../policy/index.js'
import { parseAddress } from './address.js'
import type { ListenAddress } from './address.js'
import type { FileContext } from './files.js'
import type { IssueCollector } from './issues.js'
import { readListenerMtls } from './listener-tls.js'
import type { ListenerMtls } from './listener-tls.js'

export interface ForwardAuthSettings {
  readonly address: ListenAddress
  /**
   * CIDRs of the fronting proxies (`127.0.0.1/32`, `10.0.0.0/8`); a bare address is one host.
   * Empty only with `tls`, where the client certificate is what vouches for the caller.
   */
  readonly trustedProxies: readonly string[]
  /** HTTPS with client certificates from `clientCa` required (`forward_auth.tls`). */
  readonly tls?: ListenerMtls
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function checkForwardAuth(raw: Readonly<Record<string, unknown>>, issues: IssueCollector, files: FileContext): ForwardAuthSettings | undefined {
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
  const tls = fa['tls'] === undefined ? undefined : readListenerMtls(fa['tls'], 'forward_auth.tls', issues, files)
  if (fa['tls'] !== undefined && !tls) ok = false
  const list = fa['trusted_proxies'] ?? (tls ? [] : undefined)
  const proxies = Array.isArray(list) && list.every((x): x is string => typeof x === 'string') ? list : undefined
  if (!proxies || (proxies.length === 0 && !tls)) {
    issues.error(
      'forward_auth.trusted_proxies',
      list,
      'required (or tls with client_ca_file): the addresses (CIDRs) of the proxies that call forward_auth; X-Forwarded-* headers from anyone else could name any host and path',
    )
    ok = false
  } else {
    const compiled = compileCidrs(proxies)
    if ('error' in compiled) {
      issues.error(`forward_auth.trusted_proxies[${compiled.index}]`, proxies[compiled.index], compiled.error)
      ok = false
    }
  }
  return ok && address && proxies ? { address, trustedProxies: proxies, ...(tls ? { tls } : {}) } : undefined
}
