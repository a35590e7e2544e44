/**
 * Pure functions over client certificates and CRLs for downstream mTLS. The ASN.1 is read by
 * libraries, never by hand: `node:crypto`'s X509Certificate where it suffices (fingerprints,
 * names, chain signatures) and `@peculiar/x509` for what Node does not expose (the serial as the
 * CRL compares it, the subject Name's DER, typed subject alternative names, CRLs).
 *
 * CRL signatures are checked with `node:crypto` over the signed bytes @peculiar/x509 parsed out,
 * synchronously, so the per-connection verdict stays synchronous (the library's own `verify` is
 * WebCrypto, hence asynchronous).
 */
import { constants, verify as verifySignature } from 'node:crypto'
import type { KeyObject, X509Certificate } from 'node:crypto'
import { createRequire } from 'node:module'
import type * as PeculiarX509 from '@peculiar/x509'

type AsnCertificate = PeculiarX509.X509Certificate

let library: typeof PeculiarX509 | undefined
/**
 * @peculiar/x509, loaded on first use: importing it costs a few hundred milliseconds of CPU
 * (its ASN.1 schemas and DI container), which a process without downstream_mtls (and every
 * worker) should not pay at startup. Its CommonJS build is required synchronously so the
 * per-connection verdict stays synchronous.
 */
function peculiar(): typeof PeculiarX509 {
  library ??= createRequire(import.meta.url)('@peculiar/x509') as typeof PeculiarX509
  return library
}

/**
 * The client certificate of a request's connection (`downstream_mtls`), as the TLS layer saw it.
 * Absent from a CheckRequest when the listener does not ask for certificates.
 */
export interface ClientCertificateInfo {
  /** The client sent a certificate. */
  readonly presented: boolean
  /** It chains to a `downstream_mtls` CA within `max_verify_depth`, is not revoked by the CRLs, and matches `match_subject_alt_names`. */
  readonly valid: boolean
  /** Why it is not valid, in words (absent when valid or not presented). */
  readonly problem?: string
  /** SHA-256 of the leaf's DER, lower-case hex without colons. */
  readonly fingerprintSha256: string
  /** SHA-256 of the leaf's SubjectPublicKeyInfo, standard base64. */
  readonly spkiSha256: string
  readonly subject: string
  readonly issuer: string
  readonly serialNumber: string
  readonly sanDns: readonly string[]
  readonly sanEmail: readonly string[]
  readonly sanUri: readonly string[]
  readonly sanIp: readonly string[]
  /** The leaf certificate, PEM (for `${pomerium.client_cert_*}` templates). */
  readonly leafPem: string
}

export interface SubjectAltNames {
  readonly dns: readonly string[]
  readonly email: readonly string[]
  readonly uri: readonly string[]
  /** IPv4 dotted, IPv6 in RFC 5952 form (as Go and Envoy print them). */
  readonly ip: readonly string[]
  /** Microsoft UPN otherName values (1.3.6.1.4.1.311.20.2.3). */
  readonly upn: readonly string[]
}

/** The fields of a certificate that node:crypto does not expose in a usable form. */
export interface CertificateFields {
  /** The serial as an unsigned integer of its content bytes: the form CRL entries are compared in. */
  readonly serial: bigint
  /** DER of the subject Name, compared byte for byte with a CRL's issuer. */
  readonly subject: Buffer
  readonly sans: SubjectAltNames
}

/** A parsed certificate revocation list (RFC 5280 5.1). */
export interface RevocationList {
  /** DER of the issuer Name, compared byte for byte with the issuing CA's subject. */
  readonly issuer: Buffer
  readonly revoked: ReadonlySet<bigint>
  readonly thisUpdate: Date
  readonly nextUpdate: Date | undefined
  /** The signature algorithm, as named in errors (its OID when unknown). */
  readonly signatureAlgorithm: string
  /** False when the signature algorithm is one `crlSignedBy` cannot check (it then returns false). */
  readonly signatureSupported: boolean
  readonly tbs: Buffer
  readonly signature: Buffer
  readonly verifyOptions: SignatureCheck | undefined
}

interface SignatureCheck {
  /** Digest for node:crypto's verify; null for EdDSA. */
  readonly digest: string | null
  readonly pssSaltLength?: number
}

/** Reads serial, subject DER and SANs of a certificate. Throws on what the library cannot parse. */
export function certificateFields(cert: X509Certificate): CertificateFields {
  const parsed = new (peculiar().X509Certificate)(cert.raw)
  return { serial: serialOf(parsed.serialNumber), subject: Buffer.from(parsed.subjectName.toArrayBuffer()), sans: subjectAltNames(parsed) }
}

function serialOf(hex: string): bigint {
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new Error('bad serial number')
  return BigInt(`0x${hex}`)
}

function subjectAltNames(cert: AsnCertificate): SubjectAltNames {
  const out = { dns: [] as string[], email: [] as string[], uri: [] as string[], ip: [] as string[], upn: [] as string[] }
  for (const ext of cert.getExtensions(peculiar().SubjectAlternativeNameExtension)) {
    for (const name of ext.names.items) {
      switch (name.type) {
        case 'dns':
          out.dns.push(name.value)
          break
        case 'email':
          out.email.push(name.value)
          break
        case 'url':
          out.uri.push(name.value)
          break
        case 'ip': {
          const bytes = ipBytes(name.value)
          if (bytes) out.ip.push(formatIp(bytes))
          break
        }
        case 'upn':
          out.upn.push(name.value)
          break
        case 'dn':
        case 'guid':
        case 'id':
          // Directory names, GUIDs and registered IDs are neither in the contract nor matchable.
          break
      }
    }
  }
  return out
}

/**
 * The address bytes of an IP SAN as the library prints it (dotted IPv4, IPv6 with at most one
 * `::`); undefined for the address/mask forms (8 or 32 bytes), which name no single address.
 */
function ipBytes(text: string): Buffer | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) return Buffer.from(text.split('.').map(Number))
  if (!/^[0-9a-f:]+$/i.test(text)) return undefined
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const groupsOf = (s: string | undefined): string[] => (s ? s.split(':') : [])
  const left = groupsOf(halves[0])
  const right = groupsOf(halves[1])
  const missing = 8 - left.length - right.length
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right]
  const out = Buffer.alloc(16)
  for (const [i, g] of groups.entries()) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined
    out.writeUInt16BE(parseInt(g, 16), i * 2)
  }
  return out
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

/** Parses a DER CertificateList. Throws on malformed input. */
export function parseCrl(der: Buffer): RevocationList {
  const crl = new (peculiar().X509Crl)(der)
  if (outerLength(der) !== der.length) throw new Error('trailing bytes after the CRL')
  // What the signature covers; a private getter in the typings, pinned by the exact version and
  // by the signature tests in x509.test.ts.
  const tbs = (crl as unknown as { readonly tbs: unknown }).tbs
  if (!(tbs instanceof Uint8Array || tbs instanceof ArrayBuffer) || tbs.byteLength === 0) throw new Error('cannot read the signed part of the CRL')
  const alg = crl.signatureAlgorithm as { name: string; hash?: { name?: string }; saltLength?: number; namedCurve?: string }
  const verifyOptions = signatureCheck(alg)
  const revoked = new Set<bigint>()
  for (const entry of crl.entries) revoked.add(serialOf(entry.serialNumber))
  return {
    issuer: Buffer.from(crl.issuerName.toArrayBuffer()),
    revoked,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    signatureAlgorithm: alg.namedCurve ?? (alg.hash?.name ? `${alg.name} ${alg.hash.name}` : alg.name),
    signatureSupported: verifyOptions !== undefined,
    tbs: tbs instanceof Uint8Array ? Buffer.from(tbs) : Buffer.from(new Uint8Array(tbs)),
    signature: Buffer.from(crl.signature),
    verifyOptions,
  }
}

/**
 * Bytes taken by the outermost element's header and content. Only a strictness check after the
 * library has parsed the CRL (it ignores what follows the element): nothing is decided on it.
 */
function outerLength(der: Buffer): number {
  const first = der[1] ?? 0
  if (first < 0x80) return 2 + first
  const n = first & 0x7f
  if (n === 0 || n > 4 || der.length < 2 + n) return -1
  return 2 + n + der.readUIntBE(2, n)
}

const DIGESTS: Readonly<Record<string, string>> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' }

/** node:crypto verify options for a WebCrypto-style signature algorithm; undefined when unsupported. */
function signatureCheck(alg: { name: string; hash?: { name?: string }; saltLength?: number; namedCurve?: string }): SignatureCheck | undefined {
  switch (alg.name) {
    case 'RSASSA-PKCS1-v1_5':
    case 'ECDSA': {
      const digest = DIGESTS[alg.hash?.name ?? '']
      return digest ? { digest } : undefined
    }
    case 'RSA-PSS': {
      // RSASSA-PSS-params defaults (RFC 4055): SHA-1, salt 20; MGF1 is taken to use the same hash.
      if (alg.hash === undefined) return { digest: 'sha1', pssSaltLength: alg.saltLength ?? 20 }
      const digest = DIGESTS[alg.hash.name ?? '']
      return digest ? { digest, pssSaltLength: alg.saltLength ?? 20 } : undefined
    }
    case 'Ed25519':
      return { digest: null }
    case 'EdDSA':
      return alg.namedCurve === 'Ed448' ? { digest: null } : undefined
    default:
      return undefined
  }
}

/** True when `key` (the issuing CA's public key) made the CRL's signature. Never throws. */
export function crlSignedBy(crl: RevocationList, key: KeyObject): boolean {
  const check = crl.verifyOptions
  if (!check) return false
  try {
    if (check.pssSaltLength === undefined) return verifySignature(check.digest, crl.tbs, key, crl.signature)
    return verifySignature(check.digest, crl.tbs, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: check.pssSaltLength }, crl.signature)
  } catch {
    return false
  }
}

/** The PEM blocks of a text, decoded. */
export function pemBlocks(text: string): { type: string; der: Buffer }[] {
  const out: { type: string; der: Buffer }[] = []
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) out.push({ type: m[1] as string, der: Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64') })
  return out
}
