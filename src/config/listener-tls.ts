/**
 * `{cert_file, key_file, client_ca_file}` of the delegated-authorization listeners (`forward_auth.tls`,
 * `ext_authz.tls`): the listener's certificate, and the CA whose client certificates may call it.
 */
import { readReferencedFile } from './files.js'
import type { FileContext } from './files.js'
import type { IssueCollector } from './issues.js'

export interface ListenerMtls {
  readonly cert: string
  readonly key: string
  readonly clientCa: string
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Reads the three PEM files; undefined (with issues at `path.*`) when any is missing or unreadable. */
export function readListenerMtls(value: unknown, path: string, issues: IssueCollector, files: FileContext): ListenerMtls | undefined {
  const pem = (key: string): string | undefined => {
    const file = isRecord(value) ? value[key] : undefined
    if (typeof file !== 'string' || file === '') {
      issues.error(`${path}.${key}`, file, 'expected a PEM file path')
      return undefined
    }
    const read = readReferencedFile(files, file)
    if ('error' in read) {
      issues.error(`${path}.${key}`, file, read.error)
      return undefined
    }
    if (!read.text.includes('-----BEGIN')) {
      issues.error(`${path}.${key}`, file, `no PEM block in ${read.path}`)
      return undefined
    }
    return read.text
  }
  const cert = pem('cert_file')
  const key = pem('key_file')
  const clientCa = pem('client_ca_file')
  return cert !== undefined && key !== undefined && clientCa !== undefined ? { cert, key, clientCa } : undefined
}
