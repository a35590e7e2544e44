/**
 * `ext_authz` (docs/delegated-authorization.md): the gRPC `envoy.service.auth.v3.Authorization`
 * service that Envoy's `ext_authz` filter and Istio's `CUSTOM` action call. Callers prove who
 * they are with a token (`caller_token` or `caller_token_file`, sent by Envoy as gRPC
 * `initial_metadata`), or with a client certificate (`tls`: the service's certificate and the CA
 * of its callers): without either the service would decide for anyone who can reach it.
 */
import { parseAddress } from './address.js'
import type { ListenAddress } from './address.js'
import { readReferencedFile } from './files.js'
import type { FileContext } from './files.js'
import type { IssueCollector } from './issues.js'
import { readListenerMtls } from './listener-tls.js'
import type { ListenerMtls } from './listener-tls.js'

export interface ExtAuthzSettings {
  readonly address: ListenAddress
  /** The token callers send as `authorization: Bearer <token>` metadata; undefined when callers prove themselves with client certificates instead. */
  readonly callerToken: string | undefined
  /** mTLS: the server's certificate and key, and the CA whose client certificates may call (PEM). */
  readonly tls?: ListenerMtls
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const MIN_TOKEN_LENGTH = 32

export function checkExtAuthz(raw: Readonly<Record<string, unknown>>, issues: IssueCollector, files: FileContext): ExtAuthzSettings | undefined {
  const ea = raw['ext_authz']
  if (ea === undefined || ea === null) return undefined
  if (!isRecord(ea)) {
    issues.error('ext_authz', ea, 'expected {address, caller_token_file}')
    return undefined
  }
  const addressText = ea['address']
  const address = typeof addressText === 'string' ? parseAddress(addressText) : undefined
  if (!address) issues.error('ext_authz.address', addressText, 'expected a listen address such as 127.0.0.1:9191')
  const t = ea['tls']
  const tls = t === undefined ? undefined : readListenerMtls(t, 'ext_authz.tls', issues, files)
  let token: string | undefined
  const file = ea['caller_token_file']
  if (typeof file === 'string' && file !== '') {
    const read = readReferencedFile(files, file)
    if ('error' in read) issues.error('ext_authz.caller_token_file', file, read.error)
    else token = read.text.trim()
  } else if (typeof ea['caller_token'] === 'string') token = ea['caller_token'].trim()
  if (token === undefined && t === undefined) {
    issues.error('ext_authz.caller_token_file', file, 'required (or tls with client_ca_file): the token Envoy sends (initial_metadata authorization: Bearer <token>); without it anyone who reaches the service could ask')
    return undefined
  }
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    issues.error(typeof file === 'string' ? 'ext_authz.caller_token_file' : 'ext_authz.caller_token', undefined, `the token must be at least ${MIN_TOKEN_LENGTH} characters (head -c32 /dev/urandom | base64)`)
    return undefined
  }
  if (t !== undefined && tls === undefined) return undefined
  return address ? { address, callerToken: token, ...(tls ? { tls } : {}) } : undefined
}
