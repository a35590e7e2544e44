/** Checks that PEM certificates and keys actually parse, so a typo fails at load, not at handshake. */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import type { KeyObject } from 'node:crypto'

function firstLine(err: unknown): string {
  return ((err as Error).message ?? String(err)).split('\n')[0] ?? ''
}

/** Returns an error message when `pem` holds no parseable X.509 certificate. */
export function certificateError(pem: string): string | undefined {
  try {
    new X509Certificate(pem)
    return undefined
  } catch (err) {
    return `expected a PEM certificate: ${firstLine(err)}`
  }
}

/** Returns an error message when `pem` holds no parseable private key. */
export function privateKeyError(pem: string): string | undefined {
  try {
    createPrivateKey(pem)
    return undefined
  } catch (err) {
    return `expected a PEM private key: ${firstLine(err)}`
  }
}

/** Checks a certificate/key pair: both parse and the key belongs to the certificate. */
export function keyPairError(certPem: string, keyPem: string): { cert?: string; key?: string } {
  let cert: X509Certificate
  let key: KeyObject
  try {
    cert = new X509Certificate(certPem)
  } catch (err) {
    return { cert: `expected a PEM certificate: ${firstLine(err)}` }
  }
  try {
    key = createPrivateKey(keyPem)
  } catch (err) {
    return { key: `expected a PEM private key: ${firstLine(err)}` }
  }
  return cert.checkPrivateKey(key) ? {} : { key: 'private key does not match the certificate' }
}
