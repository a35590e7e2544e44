/**
 * Server certificates: one secure context per configured certificate, chosen by SNI (exact name,
 * then wildcard, then the first certificate). With no certificate configured, Pomerium serves a
 * self-signed fallback; so do we, made once per process with the system's openssl.
 *
 * With `downstream_mtls`, every context also carries the client CAs: the listener asks each
 * client for a certificate and OpenSSL checks its chain (see client-cert.ts).
 */
import { execFileSync } from 'node:child_process'
import { constants, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSecureContext } from 'node:tls'
import type { SecureContext, SecureContextOptions } from 'node:tls'
import type { ServerCertificate } from '../config/types.js'
import type { ClientCertPolicy } from './client-cert.js'

export interface CertificateSet {
  readonly defaultContext: SecureContext
  /** PEMs of the default certificate, for clients that send no SNI (the server's own context). */
  readonly defaultPair: ServerCertificate
  /** Resolves the context for an SNI name (already lower-cased). */
  contextFor(serverName: string): SecureContext
  /** Client certificate requirements of this generation (`downstream_mtls`), when a CA is set. */
  readonly clientCertificates: ClientCertPolicy | undefined
}

let fallback: ServerCertificate | undefined

/** A self-signed certificate for `localhost`, used only when none is configured. */
export function selfSignedFallback(): ServerCertificate {
  if (fallback) return fallback
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-fallback-'))
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '365',
        '-subj', '/CN=Portcullis self-signed fallback', '-addext', 'subjectAltName=DNS:localhost',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { stdio: 'ignore' },
    )
    fallback = { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') }
    return fallback
  } catch (err) {
    throw new Error('no certificate is configured and a self-signed fallback could not be made with openssl; set certificate_file/certificate_key_file or insecure_server: true', { cause: err })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function certificateNames(pem: string): string[] {
  const x509 = new X509Certificate(pem)
  const names: string[] = []
  for (const entry of (x509.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase())
  }
  if (names.length === 0) {
    const cn = /CN=([^\n,]+)/.exec(x509.subject)
    if (cn?.[1]) names.push(cn[1].toLowerCase())
  }
  return names
}

/**
 * Context options for client certificates. The session id context is required by OpenSSL once
 * peers are verified (resuming without one is a fatal handshake error); session tickets are off,
 * so every connection is verified in full against the current CAs (a resumed session would also
 * lose the intermediates the client sent, which the depth check needs).
 */
function clientAuthOptions(policy: ClientCertPolicy | undefined): SecureContextOptions {
  if (!policy) return {}
  return {
    ...(policy.caPems.length > 0 ? { ca: [...policy.caPems] } : {}),
    // A CA that is not self-signed is a trust anchor too, as in Pomerium (Go's verifier, Envoy's
    // intermediate-CA support).
    allowPartialTrustChain: true,
    sessionIdContext: 'portcullis-downstream-mtls',
    secureOptions: constants.SSL_OP_NO_TICKET,
  }
}

export function buildCertificateSet(certs: readonly ServerCertificate[], clientCertificates?: ClientCertPolicy): CertificateSet {
  const list = certs.length > 0 ? certs : [selfSignedFallback()]
  const exact = new Map<string, SecureContext>()
  const wildcard = new Map<string, SecureContext>()
  let defaultContext: SecureContext | undefined
  const clientAuth = clientAuthOptions(clientCertificates)
  for (const c of list) {
    const ctx = createSecureContext({ cert: c.cert, key: c.key, ...clientAuth })
    defaultContext ??= ctx
    for (const name of certificateNames(c.cert)) {
      if (name.startsWith('*.')) {
        if (!wildcard.has(name.slice(1))) wildcard.set(name.slice(1), ctx)
      } else if (!exact.has(name)) exact.set(name, ctx)
    }
  }
  const def = defaultContext as SecureContext
  return {
    defaultContext: def,
    defaultPair: list[0] as ServerCertificate,
    clientCertificates,
    contextFor(serverName: string): SecureContext {
      const e = exact.get(serverName)
      if (e) return e
      const dot = serverName.indexOf('.')
      if (dot !== -1) {
        const w = wildcard.get(serverName.slice(dot))
        if (w) return w
      }
      return def
    },
  }
}
