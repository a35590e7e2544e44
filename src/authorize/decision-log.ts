/**
 * The authorize log (Pomerium docs: Authorize log): one line per decision, `"service":"authorize"`, message
 * `authorize check`, with the fields named by `authorize_log_fields` and, always, `allow`,
 * `allow-why-true|false`, `deny`, `deny-why-true|false`. Fields are chosen once per config;
 * values that would leak credentials are never written (`id-token` is logged as the fact that
 * one exists, cookies and Authorization are left out of `headers`).
 */
import { redactCredentialParams } from '../shared/redact.js'
import type { Session } from '../session/session-store.js'
import type { Evaluation } from '../policy/index.js'
import { createUnredactedLogger } from '../shared/log.js'
import type { Logger } from '../shared/log.js'
import type { CheckRequest } from './types.js'

type FieldWriter = (out: Record<string, unknown>, request: CheckRequest, session: Session | undefined) => void

/** Request headers never logged, whatever the field list says. */
const SECRET_HEADERS = new Set(['authorization', 'cookie', 'x-pomerium-authorization', 'proxy-authorization', 'x-pomerium-jwt-assertion'])

const text = (v: unknown): string => (typeof v === 'string' ? v : '')

const WRITERS: Readonly<Record<string, FieldWriter>> = {
  'request-id': (o, r) => (o['request-id'] = r.requestId),
  'check-request-id': (o, r) => (o['check-request-id'] = r.requestId),
  method: (o, r) => (o['method'] = r.method),
  path: (o, r) => (o['path'] = r.path),
  query: (o, r) => (o['query'] = redactCredentialParams(r.query.startsWith('?') ? r.query.slice(1) : r.query)),
  host: (o, r) => (o['host'] = r.host),
  ip: (o, r) => (o['ip'] = r.clientIp),
  'session-id': (o, _r, s) => (o['session-id'] = s?.id ?? ''),
  user: (o, _r, s) => (o['user'] = s?.userId ?? ''),
  email: (o, _r, s) => (o['email'] = text(s?.claims['email'])),
  'route-id': (o, r) => (o['route-id'] = r.route.id),
  'route-checksum': (o, r) => (o['route-checksum'] = r.route.id),
  'envoy-route-id': (o, r) => (o['envoy-route-id'] = r.route.id),
  'envoy-route-checksum': (o, r) => (o['envoy-route-checksum'] = r.route.id),
  'cluster-stat-name': (o, r) => (o['cluster-stat-name'] = r.route.name ?? `route-${r.route.id}`),
  'id-token': (o, _r, s) => (o['id-token'] = s?.idToken !== undefined || s?.elidedTokens?.includes('idToken') === true ? '[present]' : ''),
  'id-token-claims': (o, _r, s) => (o['id-token-claims'] = s?.claims ?? {}),
  headers: (o, r) => {
    const h: Record<string, string | string[]> = {}
    for (const [k, v] of Object.entries(r.headers)) {
      if (v !== undefined && !SECRET_HEADERS.has(k) && !k.startsWith(':')) h[k] = Array.isArray(v) ? v.map(redactCredentialParams) : redactCredentialParams(v)
    }
    o['headers'] = h
  },
}

/** A logger for one config generation's `authorize_log_fields`; undefined when info lines are off. */
export function createDecisionLog(logger: Logger, fields: readonly string[]): ((request: CheckRequest, session: Session | undefined, e: Evaluation) => void) | undefined {
  if (!logger.isLevelEnabled('info')) return undefined
  // Every field is chosen above and credentials are left out, so pino's wildcard redaction (a
  // large share of the cost of a log line) is not needed here, as for the access log.
  const log = createUnredactedLogger(logger, { service: 'authorize' })
  const writers: FieldWriter[] = []
  for (const f of fields) {
    const dot = f.indexOf('.')
    if (dot > 0 && f.slice(0, dot) === 'headers') {
      const name = f.slice(dot + 1).toLowerCase()
      if (SECRET_HEADERS.has(name)) continue
      writers.push((o, r) => {
        const v = r.headers[name]
        o[f] = redactCredentialParams(Array.isArray(v) ? v.join(',') : (v ?? ''))
      })
      continue
    }
    const w = WRITERS[f]
    if (w) writers.push(w)
  }
  return (request, session, e) => {
    const out: Record<string, unknown> = {}
    for (const w of writers) w(out, request, session)
    out['allow'] = e.allow
    out[e.allow ? 'allow-why-true' : 'allow-why-false'] = e.allowReasons
    out['deny'] = e.deny
    out[e.deny ? 'deny-why-true' : 'deny-why-false'] = e.denyReasons
    log.info(out, 'authorize check')
  }
}
