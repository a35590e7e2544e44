/**
 * Checks an attestation statement's certificate chain against the device type's configured roots
 * (`attestation_roots`, docs/devices.md). `@simplewebauthn/server` verifies the statement's
 * signature with the leaf certificate, but follows the chain only to roots it carries (Apple's and
 * Google's); for packed, tpm and fido-u2f statements the chain to a maker's root is checked here.
 */
import { X509Certificate } from 'node:crypto'
import { decodeAttestationObject } from '@simplewebauthn/server/helpers'

/**
 * Undefined when the statement's `x5c` chain runs, each certificate signed by the next and valid
 * now, to one of `rootsPem`; otherwise what is wrong.
 */
export function attestationChainProblem(attestationObjectB64url: string, rootsPem: readonly string[], now: Date = new Date()): string | undefined {
  let x5c: Uint8Array[] | undefined
  try {
    x5c = decodeAttestationObject(new Uint8Array(Buffer.from(attestationObjectB64url, 'base64url'))).get('attStmt').get('x5c')
  } catch {
    return 'its attestation object cannot be read'
  }
  if (!x5c || x5c.length === 0) return 'its attestation statement carries no certificate (self attestation)'
  let chain: X509Certificate[]
  let roots: X509Certificate[]
  try {
    chain = x5c.map((der) => new X509Certificate(Buffer.from(der)))
    roots = rootsPem.map((pem) => new X509Certificate(pem))
  } catch {
    return 'a certificate of its attestation statement cannot be read'
  }
  const valid = (c: X509Certificate): boolean => new Date(c.validFrom) <= now && now <= new Date(c.validTo)
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate
    if (!valid(cert)) return 'a certificate of its attestation statement is not valid now'
    const next = chain[i + 1]
    if (next) {
      if (!cert.checkIssued(next) || !cert.verify(next.publicKey)) return 'its attestation certificates do not form a chain'
      continue
    }
    // The last certificate of the statement: a configured root itself, or issued by one.
    const anchored = roots.some((root) => root.fingerprint256 === cert.fingerprint256 || (valid(root) && cert.checkIssued(root) && cert.verify(root.publicKey)))
    if (!anchored) return "its attestation chain does not end in one of the type's attestation_roots"
  }
  return undefined
}
