/**
 * The access log (Pomerium docs: Access log): one JSON line per request with Pomerium's field names, chosen
 * by `access_log_fields`. The field list is compiled once per config into getter functions.
 * Cookies and credentials are never among the values: `headers` omits them.
 */
import type { ClientCertificateInfo } from '../authorize/types.js'
import { redactCredentialParams } from '../shared/redact.js'
import { DEFAULT_ACCESS_LOG_FIELDS } from '../config/schema.js'
import { createUnredactedLogger } from '../shared/log.js'
import type { Logger } from '../shared/log.js'

export interface AccessEntry {
  readonly requestId: string
  readonly method: string
  readonly authority: string
  readonly path: string
  readonly query: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly clientIp: string
  readonly forwardedFor: string | undefined
  readonly startedAt: number
  readonly status: number
  readonly details: string
  readonly bytes: number
  readonly upstreamCluster: string
  readonly clusterStatName: string
  /** The request (to find its connection's client certificate, only when that field is logged). */
  readonly request?: object
}

/** The client certificate of a request's connection, if the listener asked for one. */
export type CertificateLookup = (request: object) => ClientCertificateInfo | undefined


/** Header values that must never reach a log line. */
const SECRET_HEADERS = new Set(['cookie', 'authorization', 'proxy-authorization', 'x-pomerium-authorization', 'x-pomerium-jwt-assertion', 'set-cookie'])

type Getter = (e: AccessEntry) => unknown

function headerValue(e: AccessEntry, name: string): string | undefined {
  const v = e.headers[name]
  const text = Array.isArray(v) ? v.join(', ') : v
  // A Referer (or any header) may carry a URL with a session handle in its query.
  return text === undefined ? undefined : redactCredentialParams(text)
}

function safeHeaders(e: AccessEntry): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(e.headers)) {
    if (v === undefined || k.startsWith(':')) continue
    out[k] = SECRET_HEADERS.has(k) ? '[redacted]' : redactCredentialParams(Array.isArray(v) ? v.join(', ') : v)
  }
  return out
}

const GETTERS: Readonly<Record<string, Getter>> = {
  authority: (e) => e.authority,
  // Filled in by createAccessLogger, which knows how to find the certificate.
  'client-certificate': () => undefined,
  'cluster-stat-name': (e) => e.clusterStatName,
  duration: (e) => Date.now() - e.startedAt,
  'forwarded-for': (e) => e.forwardedFor,
  ip: (e) => e.clientIp,
  method: (e) => e.method,
  path: (e) => e.path,
  query: (e) => redactCredentialParams(e.query.replace(/^\?/, '')),
  referer: (e) => headerValue(e, 'referer'),
  'request-id': (e) => e.requestId,
  'response-code': (e) => e.status,
  'response-code-details': (e) => e.details,
  size: (e) => e.bytes,
  'upstream-cluster': (e) => e.upstreamCluster,
  'user-agent': (e) => headerValue(e, 'user-agent'),
  headers: safeHeaders,
}

export type AccessLogger = (entry: AccessEntry) => void

/** `client-certificate`: what Envoy logs of the peer certificate (absent without one). */
function certificateGetter(certificateOf: CertificateLookup): Getter {
  return (e) => {
    const c = e.request ? certificateOf(e.request) : undefined
    if (!c?.presented) return undefined
    return { presented: true, valid: c.valid, subject: c.subject, issuer: c.issuer, serial: c.serialNumber, fingerprint_sha256: c.fingerprintSha256, ...(c.problem ? { problem: c.problem } : {}) }
  }
}

export function createAccessLogger(fields: readonly string[], logger: Logger, certificateOf?: CertificateLookup): AccessLogger {
  // Every value below comes from a getter that already leaves secrets out, so the access log
  // can skip the (costly) wildcard redaction of the general logger.
  const log = createUnredactedLogger(logger, { service: 'envoy' })
  if (!log.isLevelEnabled('info')) return () => {}
  const compiled: [string, Getter][] = []
  for (const field of fields.length > 0 ? fields : DEFAULT_ACCESS_LOG_FIELDS) {
    const getter = field === 'client-certificate' && certificateOf ? certificateGetter(certificateOf) : GETTERS[field]
    if (getter) compiled.push([field, getter])
    else if (field.startsWith('headers.')) {
      const name = field.slice('headers.'.length).toLowerCase()
      compiled.push([field, (e) => (SECRET_HEADERS.has(name) ? (e.headers[name] ? '[redacted]' : undefined) : headerValue(e, name))])
    }
  }
  return (entry) => {
    const record: Record<string, unknown> = {}
    for (const [name, getter] of compiled) {
      const v = getter(entry)
      if (v !== undefined) record[name] = v
    }
    log.info(record, 'http-request')
  }
}
