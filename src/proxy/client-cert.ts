/**
 * The mTLS stage: the client certificate of a TLS connection turned into the
 * `ClientCertificateInfo` the authorizer sees, computed once per connection right after the
 * handshake, against the policy built from `downstream_mtls` (src/config/mtls.ts).
 *
 * Who checks what:
 * - OpenSSL (the TLS contexts get the CAs, `requestCert` asks for a certificate) builds and
 *   checks the chain: signatures, validity dates, CA constraints, client-auth purpose. CA
 *   certificates that are not self-signed are trust anchors too (partial chains), as in Pomerium.
 *   Its verdict is read after the handshake.
 * - This module adds what Pomerium adds on top of Envoy's defaults: `max_verify_depth`
 *   (default 1, 0 = no limit; certificates after the leaf up to and including the trusted CA),
 *   `match_subject_alt_names` (anchored RE2, at least one SAN of the leaf must match one entry)
 *   and the CRLs, consulted for the leaf's direct issuer only (Pomerium sets Envoy's
 *   `only_verify_leaf_cert_crl`). Node cannot hand CRLs to OpenSSL that way: its `crl` option
 *   demands a CRL from every CA of every chain and reads one CRL per string, so CRLs are parsed
 *   (src/shared/x509.ts, by a library) and checked here.
 */
import { createHash, X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import type { ClientCertificateInfo } from '../authorize/types.js'
import type { ClientCertPolicy, SanMatcher, SanType } from '../config/mtls.js'
import { certificateFields, crlSignedBy as signedBy, rfc2253 } from '../shared/x509.js'
import type { CertificateFields, RevocationList, SubjectAltNames } from '../shared/x509.js'

export { buildClientCertPolicy, DEFAULT_MAX_VERIFY_DEPTH, SAN_TYPES } from '../config/mtls.js'
export type { ClientCertPolicy, MtlsEnforcement, SanMatcher, SanType } from '../config/mtls.js'
export { formatIp, parseCrl, rfc2253 } from '../shared/x509.js'
export type { RevocationList, SubjectAltNames } from '../shared/x509.js'

/** Where the result for a connection is kept (on the TLS socket). */
export const kClientCertificate = Symbol('portcullis.clientCertificate')

/** The certificate info of a connection that presented none (or predates `downstream_mtls`). */
export const NOT_PRESENTED: ClientCertificateInfo = Object.freeze({
  presented: false,
  valid: false,
  fingerprintSha256: '',
  spkiSha256: '',
  subject: '',
  issuer: '',
  serialNumber: '',
  sanDns: Object.freeze([]),
  sanEmail: Object.freeze([]),
  sanUri: Object.freeze([]),
  sanIp: Object.freeze([]),
  leafPem: '',
})

// ---------------------------------------------------------------------------------------------
// Per connection

/**
 * Verifies the client certificate of a server-side TLS socket once its handshake is done, and
 * keeps the result on the socket. `requestCert` must have been set for the socket.
 */
export function inspectConnection(socket: TLSSocket, policy: ClientCertPolicy): ClientCertificateInfo {
  const tagged = socket as TLSSocket & { [kClientCertificate]?: ClientCertificateInfo }
  const cached = tagged[kClientCertificate]
  if (cached) return cached
  let info: ClientCertificateInfo
  try {
    info = computeConnectionInfo(socket, policy)
  } catch {
    info = UNREADABLE
  }
  tagged[kClientCertificate] = info
  return info
}

/** A certificate was sent but could not even be described: invalid. */
const UNREADABLE: ClientCertificateInfo = Object.freeze({ ...NOT_PRESENTED, presented: true, problem: 'the client certificate cannot be read' })

function computeConnectionInfo(socket: TLSSocket, policy: ClientCertPolicy): ClientCertificateInfo {
  const chain = peerChain(socket)
  const leaf = chain[0]
  if (!leaf) return NOT_PRESENTED
  return clientCertificateInfo(leaf, chain.slice(1), opensslVerdict(socket), policy)
}

/**
 * A client certificate another proxy terminated and passed on as PEM (Envoy's ext_authz
 * `source.certificate`): the leaf alone, checked against `downstream_mtls` as a connection's would
 * be (chain to the CAs, validity now, CRLs, SAN matchers). No PEM: NOT_PRESENTED.
 */
export function forwardedCertificate(pem: string, policy: ClientCertPolicy, now: Date = new Date()): ClientCertificateInfo {
  if (pem.trim() === '') return NOT_PRESENTED
  let leaf: X509Certificate
  try {
    leaf = new X509Certificate(pem)
  } catch {
    return UNREADABLE
  }
  // OpenSSL did not see this chain here: validity is checked now, the chain by verifyLeaf.
  const expired = now < new Date(leaf.validFrom) ? 'CERT_NOT_YET_VALID' : now > new Date(leaf.validTo) ? 'CERT_HAS_EXPIRED' : undefined
  return clientCertificateInfo(leaf, [], expired, policy)
}

/**
 * The certificate of a request's connection (HTTP/1.1 socket, or the HTTP/2 session's socket),
 * or NOT_PRESENTED when the connection presented none or was accepted before the listener asked
 * for certificates.
 */
export function connectionCertificate(req: object): ClientCertificateInfo {
  type Tagged = { [kClientCertificate]?: ClientCertificateInfo }
  try {
    const r = req as { socket?: Tagged; stream?: { session?: { socket?: Tagged } } }
    // For HTTP/2 `req.socket` is a proxy that throws once the session is gone; read the session.
    const socket = 'stream' in r && r.stream ? r.stream.session?.socket : r.socket
    return socket?.[kClientCertificate] ?? NOT_PRESENTED
  } catch {
    return NOT_PRESENTED
  }
}

/**
 * OpenSSL's verdict on the peer chain: undefined when it verified, else its error code.
 * Node keeps this on the native handle (its own server code reads it the same way); if a
 * future Node hides it, the result is "not verified", never "verified".
 */
function opensslVerdict(socket: TLSSocket): string | undefined {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null | undefined } })._handle
  if (typeof handle?.verifyError !== 'function') return 'VERIFY_RESULT_UNAVAILABLE'
  try {
    const err = handle.verifyError()
    return err ? (err.code ?? err.message) : undefined
  } catch {
    return 'VERIFY_RESULT_UNAVAILABLE'
  }
}

/**
 * The peer's certificate and the rest of its chain as Node reports it (sent by the client,
 * completed from the CAs); empty when the client sent none. Read through getPeerCertificate(true)
 * only: in Node 20, getPeerX509Certificate() on a server socket drops the rest of the chain from
 * what getPeerCertificate(true) reports afterwards.
 */
function peerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = []
  try {
    const seen = new Set<string>()
    let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
    while (c && c.raw && out.length < 16) {
      const x = new X509Certificate(c.raw)
      if (seen.has(x.fingerprint256)) break
      seen.add(x.fingerprint256)
      out.push(x)
      c = c.issuerCertificate
    }
  } catch {
    // Whatever could be read is used; a missing intermediate only makes the chain check fail.
  }
  return out
}

/**
 * The info for a leaf certificate: what it says, and whether it passes the policy.
 * `opensslError` is OpenSSL's verdict on the chain (undefined = verified).
 */
export function clientCertificateInfo(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  opensslError: string | undefined,
  policy: ClientCertPolicy,
): ClientCertificateInfo {
  // The certificate comes from the client: whatever cannot be read makes it invalid, never throws.
  let parsed: CertificateFields | undefined
  try {
    parsed = certificateFields(leaf)
  } catch {
    parsed = undefined
  }
  let problem: string | undefined
  try {
    problem = parsed ? verifyLeaf(leaf, parsed, intermediates, opensslError, policy) : 'the client certificate cannot be read'
  } catch {
    problem = 'the client certificate could not be verified'
  }
  const sans = parsed?.sans ?? { dns: [], email: [], uri: [], ip: [], upn: [] }
  return {
    presented: true,
    valid: problem === undefined,
    ...(problem !== undefined ? { problem } : {}),
    fingerprintSha256: createHash('sha256').update(leaf.raw).digest('hex'),
    spkiSha256: spkiHash(leaf),
    subject: rfc2253(leaf.subject),
    issuer: rfc2253(leaf.issuer),
    serialNumber: leaf.serialNumber.toLowerCase(),
    sanDns: sans.dns,
    sanEmail: sans.email,
    sanUri: sans.uri,
    sanIp: sans.ip,
    leafPem: leaf.toString(),
  }
}

/** SHA-256 of the SubjectPublicKeyInfo, base64; '' for a key type Node cannot load. */
function spkiHash(leaf: X509Certificate): string {
  try {
    return createHash('sha256').update(leaf.publicKey.export({ type: 'spki', format: 'der' })).digest('base64')
  } catch {
    return ''
  }
}

/** Why the leaf fails the policy, in words; undefined when it passes. */
function verifyLeaf(
  leaf: X509Certificate,
  parsed: CertificateFields,
  intermediates: readonly X509Certificate[],
  opensslError: string | undefined,
  policy: ClientCertPolicy,
): string | undefined {
  if (policy.broken !== undefined) return policy.broken
  if (opensslError !== undefined) return describeOpensslError(opensslError)
  if (!matchesSubjectAltNames(parsed.sans, policy.sanMatchers)) return 'the client certificate matches none of downstream_mtls.match_subject_alt_names'
  const anchors = new Set(policy.anchors.map((a) => a.fingerprint256))
  if (anchors.has(leaf.fingerprint256)) return undefined
  const pool = [...policy.anchors, ...intermediates.filter((c) => !anchors.has(c.fingerprint256))]
  const issuers = pool.filter((c) => issuedBy(leaf, c))
  let tooDeep: number | undefined
  let revocationProblem: string | undefined
  let chained = false
  for (const issuer of issuers) {
    const rest = distanceToAnchor(issuer, pool, anchors, new Set([leaf.fingerprint256]))
    if (rest === undefined) continue
    chained = true
    const depth = rest + 1
    if (policy.maxVerifyDepth > 0 && depth > policy.maxVerifyDepth) {
      tooDeep = tooDeep === undefined ? depth : Math.min(tooDeep, depth)
      continue
    }
    const revoked = revocation(parsed.serial, issuer, policy.crls)
    if (revoked === undefined) return undefined
    revocationProblem = revoked
  }
  if (revocationProblem !== undefined) return revocationProblem
  if (tooDeep !== undefined) return `the client certificate chain is longer than downstream_mtls.max_verify_depth allows (${tooDeep} > ${policy.maxVerifyDepth})`
  if (!chained) return 'the client certificate does not chain to a downstream_mtls certificate authority'
  return 'the client certificate could not be verified'
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey)
  } catch {
    return false
  }
}

/**
 * Certificates from `cert` (exclusive) to a trusted CA (inclusive): 0 when `cert` is one.
 * Breadth-first, so the shortest chain is found and the work stays quadratic in the pool size.
 */
function distanceToAnchor(cert: X509Certificate, pool: readonly X509Certificate[], anchors: ReadonlySet<string>, visited: ReadonlySet<string>): number | undefined {
  const seen = new Set(visited).add(cert.fingerprint256)
  let level = [cert]
  for (let distance = 0; level.length > 0 && distance <= pool.length; distance++) {
    if (level.some((c) => anchors.has(c.fingerprint256))) return distance
    const next: X509Certificate[] = []
    for (const c of level) {
      for (const candidate of pool) {
        if (seen.has(candidate.fingerprint256) || !issuedBy(c, candidate)) continue
        seen.add(candidate.fingerprint256)
        next.push(candidate)
      }
    }
    level = next
  }
  return undefined
}

/** Undefined when no CRL of `issuer` revokes `serial`; else why the certificate is refused. */
function revocation(serial: bigint, issuer: X509Certificate, crls: readonly RevocationList[]): string | undefined {
  if (crls.length === 0) return undefined
  let subject: Buffer
  try {
    subject = certificateFields(issuer).subject
  } catch {
    return 'the issuer of the client certificate cannot be read'
  }
  for (const crl of crls) {
    if (!crl.issuer.equals(subject)) continue
    if (!crlSignedBy(crl, issuer)) return 'a downstream_mtls CRL for the issuer of the client certificate has an invalid signature'
    if (crl.revoked.has(serial)) return 'the client certificate has been revoked'
  }
  return undefined
}

const crlChecks = new WeakMap<RevocationList, Map<string, boolean>>()

function crlSignedBy(crl: RevocationList, issuer: X509Certificate): boolean {
  let byIssuer = crlChecks.get(crl)
  if (!byIssuer) {
    byIssuer = new Map()
    crlChecks.set(crl, byIssuer)
  }
  const hit = byIssuer.get(issuer.fingerprint256)
  if (hit !== undefined) return hit
  const ok = signedBy(crl, issuer.publicKey)
  byIssuer.set(issuer.fingerprint256, ok)
  return ok
}

function describeOpensslError(code: string): string {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'the client certificate has expired'
    case 'CERT_NOT_YET_VALID':
      return 'the client certificate is not valid yet'
    case 'INVALID_PURPOSE':
      return 'the client certificate is not valid for client authentication'
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the client certificate is not issued by a downstream_mtls certificate authority'
    case 'CERT_SIGNATURE_FAILURE':
      return 'the client certificate has an invalid signature'
    default:
      return `the client certificate failed verification (${code})`
  }
}

// ---------------------------------------------------------------------------------------------
// Subject alternative names

/** True when there are no matchers, or one of the leaf's SANs fully matches one of them. */
export function matchesSubjectAltNames(sans: SubjectAltNames, matchers: readonly SanMatcher[]): boolean {
  if (matchers.length === 0) return true
  return matchers.some((m) => sansOfType(sans, m.type).some((v) => m.pattern.test(v)))
}

function sansOfType(sans: SubjectAltNames, type: SanType): readonly string[] {
  switch (type) {
    case 'dns':
      return sans.dns
    case 'email':
      return sans.email
    case 'ip_address':
      return sans.ip
    case 'uri':
      return sans.uri
    case 'user_principal_name':
      return sans.upn
  }
}

