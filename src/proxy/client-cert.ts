/**
 * Downstream mTLS (`downstream_mtls`): the settings turned into a verification policy, and the
 * client certificate of a TLS connection turned into the `ClientCertificateInfo` the authorizer
 * sees, computed once per connection right after the handshake.
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
 *   and checked here.
 */
import { constants, createHash, verify as verifySignature, X509Certificate } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'
import type { ClientCertificateInfo } from '../authorize/types.js'
import { Pattern } from '../shared/pattern.js'

export type MtlsEnforcement = 'policy_with_default_deny' | 'policy' | 'reject_connection'

export const SAN_TYPES = ['dns', 'email', 'ip_address', 'uri', 'user_principal_name'] as const
export type SanType = (typeof SAN_TYPES)[number]

export interface SanMatcher {
  readonly type: SanType
  readonly source: string
  readonly pattern: Pattern
}

/** A parsed certificate revocation list (RFC 5280 5.1). */
export interface RevocationList {
  /** DER of the issuer Name, compared byte for byte with the issuing CA's subject. */
  readonly issuer: Buffer
  readonly revoked: ReadonlySet<bigint>
  readonly nextUpdate: Date | undefined
  readonly tbs: Buffer
  readonly signatureAlgorithm: string
  readonly signatureParameters: Buffer | undefined
  readonly signature: Buffer
}

/** `downstream_mtls` in the form the TLS layer and the verifier use; built once per config. */
export interface ClientCertPolicy {
  readonly enforcement: MtlsEnforcement
  /** The trusted CAs (`ca`/`ca_file`). */
  readonly anchors: readonly X509Certificate[]
  /** PEM of each anchor, for the TLS contexts. */
  readonly caPems: readonly string[]
  readonly crls: readonly RevocationList[]
  readonly sanMatchers: readonly SanMatcher[]
  /** Certificates allowed after the leaf, the trusted CA included; 0 = no limit. */
  readonly maxVerifyDepth: number
  /** Set when the settings cannot be used as given: every certificate is then invalid (fail closed). */
  readonly broken: string | undefined
  readonly errors: readonly string[]
  readonly warnings: readonly string[]
}

/** Pomerium's default `max_verify_depth`: the leaf must be issued directly by a configured CA. */
export const DEFAULT_MAX_VERIFY_DEPTH = 1

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
// Policy from config

/**
 * Builds the policy from `config.raw['downstream_mtls']` (`ca`/`crl` already PEM text, files
 * read). Undefined when no CA is set: then no client certificate is asked for, as in Pomerium.
 * Never throws: problems are listed in `errors` and make the policy fail closed.
 */
export function buildClientCertPolicy(raw: unknown): ClientCertPolicy | undefined {
  if (!isRecord(raw)) return undefined
  const caText = raw['ca']
  if (typeof caText !== 'string' || caText.trim() === '') return undefined
  const errors: string[] = []
  const warnings: string[] = []

  const anchors: X509Certificate[] = []
  const blocks = pemBlocks(caText)
  for (const b of blocks) {
    if (b.type !== 'CERTIFICATE') continue
    try {
      anchors.push(new X509Certificate(b.der))
    } catch (err) {
      errors.push(`downstream_mtls.ca: a certificate cannot be parsed (${(err as Error).message})`)
    }
  }
  if (anchors.length === 0 && errors.length === 0) errors.push('downstream_mtls.ca holds no PEM certificate')

  const crls: RevocationList[] = []
  const crlText = raw['crl']
  if (typeof crlText === 'string' && crlText.trim() !== '') {
    const crlBlocks = pemBlocks(crlText).filter((b) => b.type === 'X509 CRL')
    if (crlBlocks.length === 0) errors.push('downstream_mtls.crl holds no PEM "X509 CRL" block')
    crlBlocks.forEach((b, i) => {
      try {
        const crl = parseCrl(b.der)
        crls.push(crl)
        if (crl.nextUpdate && crl.nextUpdate.getTime() < Date.now()) {
          warnings.push(`downstream_mtls.crl: CRL ${i + 1} is past its nextUpdate (${crl.nextUpdate.toISOString()}); it is still used`)
        }
        if (!SIGNATURE_ALGORITHMS.has(crl.signatureAlgorithm)) {
          errors.push(`downstream_mtls.crl: CRL ${i + 1} uses an unsupported signature algorithm (${crl.signatureAlgorithm})`)
        }
      } catch (err) {
        errors.push(`downstream_mtls.crl: CRL ${i + 1} cannot be parsed (${(err as Error).message})`)
      }
    })
  }

  const sanMatchers: SanMatcher[] = []
  const sans = raw['match_subject_alt_names']
  if (sans !== undefined && sans !== null) {
    const list = Array.isArray(sans) ? (sans as unknown[]) : [sans]
    list.forEach((entry, i) => {
      const at = `downstream_mtls.match_subject_alt_names[${i}]`
      if (!isRecord(entry) || Object.keys(entry).length !== 1) {
        errors.push(`${at}: expected {type: pattern} with one of ${SAN_TYPES.join(', ')}`)
        return
      }
      const [key, value] = Object.entries(entry)[0] as [string, unknown]
      const type = key.toLowerCase() as SanType
      if (!SAN_TYPES.includes(type)) {
        errors.push(`${at}: unknown SAN type "${key}" (expected one of ${SAN_TYPES.join(', ')})`)
        return
      }
      if (typeof value !== 'string') {
        errors.push(`${at}.${key}: expected a regular expression string`)
        return
      }
      const pattern = Pattern.compile(value, true)
      if (typeof pattern === 'string') {
        errors.push(`${at}.${key}: ${pattern}`)
        return
      }
      sanMatchers.push({ type, source: value, pattern })
    })
  }

  let maxVerifyDepth = DEFAULT_MAX_VERIFY_DEPTH
  const depth = raw['max_verify_depth']
  if (depth !== undefined && depth !== null) {
    if (typeof depth === 'number' && Number.isInteger(depth) && depth >= 0 && depth <= 0xffffffff) maxVerifyDepth = depth
    else errors.push('downstream_mtls.max_verify_depth: expected a non-negative integer')
  }

  const e = raw['enforcement']
  const enforcement: MtlsEnforcement = e === 'policy' || e === 'reject_connection' ? e : 'policy_with_default_deny'

  return {
    enforcement,
    anchors,
    caPems: anchors.map((a) => a.toString()),
    crls,
    sanMatchers,
    maxVerifyDepth,
    broken: errors.length > 0 ? `downstream_mtls is invalid: ${errors.join('; ')}` : undefined,
    errors,
    warnings,
  }
}

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
  let parsed: ParsedCertificate | undefined
  try {
    parsed = parseCertificate(leaf)
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
  parsed: ParsedCertificate,
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
    subject = parseCertificate(issuer).subject
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
  const ok = checkSignature(crl.signatureAlgorithm, crl.signatureParameters, crl.tbs, crl.signature, issuer.publicKey)
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

export interface SubjectAltNames {
  readonly dns: readonly string[]
  readonly email: readonly string[]
  readonly uri: readonly string[]
  /** IPv4 dotted, IPv6 in RFC 5952 form (as Go and Envoy print them). */
  readonly ip: readonly string[]
  /** Microsoft UPN otherName values (1.3.6.1.4.1.311.20.2.3). */
  readonly upn: readonly string[]
}

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

// ---------------------------------------------------------------------------------------------
// Names

/**
 * An OpenSSL multi-line name as Node prints it (`C=US\nO=Org\nCN=x`, values already escaped as
 * RFC 2253 asks) in RFC 2253 form, most specific first: `CN=x,O=Org,C=US` (what Envoy reports).
 */
export function rfc2253(multiline: string): string {
  if (multiline === '') return ''
  return multiline
    .split('\n')
    .reverse()
    .map((rdn) => rdn.split(' + ').reverse().join('+'))
    .join(',')
}

// ---------------------------------------------------------------------------------------------
// DER

interface Tlv {
  readonly tag: number
  /** Offset of the first header byte. */
  readonly start: number
  readonly contentStart: number
  readonly end: number
}

function readTlv(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new Error('truncated DER')
  const tag = buf[pos] as number
  if ((tag & 0x1f) === 0x1f) throw new Error('unsupported DER tag')
  let len = buf[pos + 1] as number
  let p = pos + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || p + n > limit) throw new Error('bad DER length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + (buf[p + i] as number)
    p += n
  }
  if (p + len > limit) throw new Error('truncated DER')
  return { tag, start: pos, contentStart: p, end: p + len }
}

function childrenOf(buf: Buffer, tlv: Tlv): Tlv[] {
  const out: Tlv[] = []
  let p = tlv.contentStart
  while (p < tlv.end) {
    const c = readTlv(buf, p, tlv.end)
    out.push(c)
    p = c.end
  }
  return out
}

function expectTag(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (!tlv || tlv.tag !== tag) throw new Error(`expected ${what}`)
  return tlv
}

const content = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.contentStart, t.end)
const whole = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end)

function decodeOid(bytes: Buffer): string {
  if (bytes.length === 0) throw new Error('empty OID')
  const parts: number[] = []
  let value = 0
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f)
    if (!(b & 0x80)) {
      parts.push(value)
      value = 0
    }
  }
  const first = parts.shift() ?? 0
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80]
  return [...head, ...parts].join('.')
}

function decodeInteger(bytes: Buffer): bigint {
  if (bytes.length === 0) throw new Error('empty INTEGER')
  const unsigned = BigInt(`0x${bytes.toString('hex')}`)
  return (bytes[0] as number) & 0x80 ? unsigned - (1n << BigInt(bytes.length * 8)) : unsigned
}

function decodeTime(buf: Buffer, t: Tlv): Date {
  const s = content(buf, t).toString('latin1')
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
  if (!m) throw new Error('bad time')
  let year = Number(m[1])
  if (t.tag === 0x17) year += year < 50 ? 2000 : 1900
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])))
}

function isTime(t: Tlv | undefined): boolean {
  return t !== undefined && (t.tag === 0x17 || t.tag === 0x18)
}

interface ParsedCertificate {
  readonly serial: bigint
  /** DER of the subject Name. */
  readonly subject: Buffer
  readonly sans: SubjectAltNames
}

const OID_SAN = '2.5.29.17'
const OID_UPN = '1.3.6.1.4.1.311.20.2.3'

/** The few fields X509Certificate does not expose in a usable form: serial, raw subject, SANs. */
function parseCertificate(x509: X509Certificate): ParsedCertificate {
  const der = x509.raw
  const cert = expectTag(readTlv(der, 0, der.length), 0x30, 'Certificate')
  const tbs = expectTag(childrenOf(der, cert)[0], 0x30, 'TBSCertificate')
  const fields = childrenOf(der, tbs)
  const i = fields[0]?.tag === 0xa0 ? 1 : 0
  const serial = decodeInteger(content(der, expectTag(fields[i], 0x02, 'serialNumber')))
  const subject = whole(der, expectTag(fields[i + 4], 0x30, 'subject'))
  const sans = { dns: [] as string[], email: [] as string[], uri: [] as string[], ip: [] as string[], upn: [] as string[] }
  const extensions = fields.find((f) => f.tag === 0xa3)
  if (extensions) {
    const list = expectTag(childrenOf(der, extensions)[0], 0x30, 'Extensions')
    for (const ext of childrenOf(der, list)) {
      const parts = childrenOf(der, ext)
      const oid = decodeOid(content(der, expectTag(parts[0], 0x06, 'extnID')))
      if (oid !== OID_SAN) continue
      const value = expectTag(parts[parts.length - 1], 0x04, 'extnValue')
      readGeneralNames(der, expectTag(readTlv(der, value.contentStart, value.end), 0x30, 'GeneralNames'), sans)
    }
  }
  return { serial, subject, sans }
}

function readGeneralNames(der: Buffer, names: Tlv, out: { dns: string[]; email: string[]; uri: string[]; ip: string[]; upn: string[] }): void {
  for (const n of childrenOf(der, names)) {
    const value = content(der, n)
    switch (n.tag) {
      case 0x81:
        out.email.push(value.toString('latin1'))
        break
      case 0x82:
        out.dns.push(value.toString('latin1'))
        break
      case 0x86:
        out.uri.push(value.toString('latin1'))
        break
      case 0x87:
        if (value.length === 4 || value.length === 16) out.ip.push(formatIp(value))
        break
      case 0xa0: {
        // otherName: type-id OID, [0] EXPLICIT value; a UPN's value is a UTF8String.
        const parts = childrenOf(der, n)
        if (parts[0]?.tag !== 0x06 || decodeOid(content(der, parts[0])) !== OID_UPN) break
        const wrapped = parts[1]
        if (wrapped?.tag !== 0xa0) break
        const inner = childrenOf(der, wrapped)[0]
        if (inner?.tag === 0x0c) out.upn.push(content(der, inner).toString('utf8'))
        break
      }
      default:
        break
    }
  }
}

/** IPv4 dotted; IPv6 as RFC 5952 (lower case, longest zero run of two or more groups as `::`); v4-mapped as IPv4, like Go. */
export function formatIp(b: Buffer): string {
  if (b.length === 4) return [...b].join('.')
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return [...b.subarray(12)].join('.')
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] as number) << 8) | (b[i + 1] as number))
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestLen < 2) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`
}

/** Parses a DER CertificateList. Throws on malformed input. */
export function parseCrl(der: Buffer): RevocationList {
  const list = expectTag(readTlv(der, 0, der.length), 0x30, 'CertificateList')
  if (list.end !== der.length) throw new Error('trailing bytes after the CRL')
  const [tbsTlv, algTlv, sigTlv] = childrenOf(der, list)
  const tbs = expectTag(tbsTlv, 0x30, 'TBSCertList')
  const alg = expectTag(algTlv, 0x30, 'signatureAlgorithm')
  const sig = expectTag(sigTlv, 0x03, 'signatureValue')
  const algParts = childrenOf(der, alg)
  const signatureAlgorithm = decodeOid(content(der, expectTag(algParts[0], 0x06, 'algorithm OID')))
  const params = algParts[1]
  const bits = content(der, sig)
  if (bits[0] !== 0) throw new Error('signature BIT STRING has unused bits')

  const fields = childrenOf(der, tbs)
  let i = 0
  if (fields[i]?.tag === 0x02) i++ // version
  expectTag(fields[i++], 0x30, 'signature')
  const issuer = whole(der, expectTag(fields[i++], 0x30, 'issuer'))
  if (!isTime(fields[i])) throw new Error('expected thisUpdate')
  i++
  let nextUpdate: Date | undefined
  const maybeNext = fields[i]
  if (maybeNext && isTime(maybeNext)) {
    nextUpdate = decodeTime(der, maybeNext)
    i++
  }
  const revoked = new Set<bigint>()
  if (fields[i]?.tag === 0x30) {
    for (const entry of childrenOf(der, fields[i] as Tlv)) {
      const serial = expectTag(childrenOf(der, expectTag(entry, 0x30, 'revoked entry'))[0], 0x02, 'userCertificate')
      revoked.add(decodeInteger(content(der, serial)))
    }
  }
  return {
    issuer: Buffer.from(issuer),
    revoked,
    nextUpdate,
    tbs: Buffer.from(whole(der, tbs)),
    signatureAlgorithm,
    signatureParameters: params && params.tag !== 0x05 ? Buffer.from(whole(der, params)) : undefined,
    signature: Buffer.from(bits.subarray(1)),
  }
}

const HASHES: Readonly<Record<string, string>> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
}

/** Signature algorithm OID -> digest (`null` for EdDSA, `pss` for RSASSA-PSS, whose digest is in the parameters). */
const SIGNATURE_ALGORITHMS: ReadonlyMap<string, string | null> = new Map<string, string | null>([
  ['1.2.840.10045.4.1', 'sha1'],
  ['1.2.840.10045.4.3.2', 'sha256'],
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
  ['1.2.840.113549.1.1.5', 'sha1'],
  ['1.2.840.113549.1.1.11', 'sha256'],
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
  ['1.2.840.113549.1.1.10', 'pss'],
  ['1.3.101.112', null],
  ['1.3.101.113', null],
])

function checkSignature(algorithm: string, parameters: Buffer | undefined, data: Buffer, signature: Buffer, key: KeyObject): boolean {
  const digest = SIGNATURE_ALGORITHMS.get(algorithm)
  if (digest === undefined) return false
  try {
    if (digest !== 'pss') return verifySignature(digest, data, key, signature)
    const pss = pssParameters(parameters)
    return verifySignature(pss.hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pss.saltLength }, signature)
  } catch {
    return false
  }
}

/** RSASSA-PSS-params (RFC 4055): hash (default SHA-1) and salt length (default 20); MGF1 is taken to use the same hash. */
function pssParameters(der: Buffer | undefined): { hash: string; saltLength: number } {
  let hash = 'sha1'
  let saltLength = 20
  if (!der) return { hash, saltLength }
  for (const field of childrenOf(der, expectTag(readTlv(der, 0, der.length), 0x30, 'RSASSA-PSS-params'))) {
    const inner = childrenOf(der, field)[0]
    if (field.tag === 0xa0 && inner) {
      const oid = childrenOf(der, expectTag(inner, 0x30, 'hashAlgorithm'))[0]
      const name = oid ? HASHES[decodeOid(content(der, oid))] : undefined
      if (!name) throw new Error('unsupported PSS hash')
      hash = name
    } else if (field.tag === 0xa2 && inner) {
      saltLength = Number(decodeInteger(content(der, expectTag(inner, 0x02, 'saltLength'))))
    }
  }
  return { hash, saltLength }
}

function pemBlocks(text: string): { type: string; der: Buffer }[] {
  const out: { type: string; der: Buffer }[] = []
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) out.push({ type: m[1] as string, der: Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64') })
  return out
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
