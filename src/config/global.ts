/**
 * Rules for global settings that the descriptor kinds cannot express: listener addresses,
 * server certificates, secrets, log fields, response headers, runtime flags and claim headers.
 */
import type { ServerCertificate } from './types.js'
import {
  ACCESS_LOG_FIELDS,
  AUTHORIZE_LOG_FIELDS,
  DEFAULT_RUNTIME_FLAGS,
  SERVICE_NAMES,
} from './schema.js'
import { parseAddress } from './address.js'
import type { ListenAddress } from './address.js'
import { isRecord, splitList } from './coerce.js'
import { decodePem, readReferencedFile } from './files.js'
import { isHeaderName, readHeaderMap, securityHeaders } from './headers.js'
import { indexPath, joinPath } from './issues.js'
import { suggestion } from './normalise.js'
import type { LoadContext } from './normalise.js'
import { keyPairError } from './tls.js'
import { metricsBasicAuthProblem } from './service-settings.js'

/** The key that supplied a value: `<key>_file` when the file variant was used. */
function sourceKey(raw: Readonly<Record<string, unknown>>, key: string): string {
  return raw[`${key}_file`] !== undefined ? `${key}_file` : key
}

/** `services` → canonical service names (`cache` is folded into `databroker`). */
export function checkServices(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): string[] {
  const names = (raw['services'] as string[] | undefined) ?? ['all']
  const out: string[] = []
  names.forEach((name, i) => {
    const n = name.trim().toLowerCase()
    if (!SERVICE_NAMES.includes(n)) {
      ctx.issues.error(indexPath('services', i), name, `expected a comma-separated list of ${SERVICE_NAMES.join(', ')}`)
      return
    }
    const canonical = n === 'cache' ? 'databroker' : n
    if (!out.includes(canonical)) out.push(canonical)
  })
  return out.length === 0 ? ['all'] : out
}

/** Parses every listener address setting; returns the main and redirect listeners. */
export function checkAddresses(
  raw: Readonly<Record<string, unknown>>,
  ctx: LoadContext,
): { address: ListenAddress; httpRedirectAddr: ListenAddress | undefined } {
  const parsed = new Map<string, ListenAddress>()
  for (const key of ['address', 'http_redirect_addr', 'grpc_address', 'metrics_address', 'health_check_addr', 'debug_address', 'ssh_address']) {
    const v = raw[key]
    if (typeof v !== 'string' || v === '') continue
    const a = parseAddress(v)
    if (a) parsed.set(key, a)
    else ctx.issues.error(key, v, 'expected a listen address such as :443, 127.0.0.1:8443 or [::1]:443')
  }
  return { address: parsed.get('address') ?? { host: undefined, port: 443 }, httpRedirectAddr: parsed.get('http_redirect_addr') }
}

/** Resolves a `certificates[].cert|key` entry: inline PEM, base64 PEM, or a file path. */
function certificateEntry(value: unknown, path: string, ctx: LoadContext): string | undefined {
  if (typeof value !== 'string' || value.trim() === '') {
    ctx.issues.error(path, value, 'expected a file path (or PEM)')
    return undefined
  }
  const inline = decodePem(value)
  if (inline !== undefined) return inline
  const read = readReferencedFile(ctx, value.trim())
  if ('error' in read) {
    ctx.issues.error(path, value, read.error)
    return undefined
  }
  return read.text
}

/** Loads and checks every server certificate (single pair and `certificates`). */
export function checkCertificates(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): ServerCertificate[] {
  const out: ServerCertificate[] = []
  const cert = raw['certificate'] as string | undefined
  const key = raw['certificate_key'] as string | undefined
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? 'certificate' : 'certificate_key'
    const present = cert === undefined ? 'certificate_key' : 'certificate'
    ctx.issues.error(sourceKey(raw, present), undefined, `${missing} (or ${missing}_file) is required together with ${present}`, 'key')
  } else if (cert !== undefined && key !== undefined) {
    const err = keyPairError(cert, key)
    if (err.cert) ctx.issues.error(sourceKey(raw, 'certificate'), undefined, err.cert)
    if (err.key) ctx.issues.error(sourceKey(raw, 'certificate_key'), undefined, err.key)
    if (!err.cert && !err.key) out.push({ cert, key })
  }
  const list = raw['certificates']
  if (Array.isArray(list)) {
    list.forEach((entry: Record<string, unknown>, i) => {
      const p = indexPath('certificates', i)
      const c = certificateEntry(entry['cert'], joinPath(p, 'cert'), ctx)
      const k = certificateEntry(entry['key'], joinPath(p, 'key'), ctx)
      if (c === undefined || k === undefined) return
      const err = keyPairError(c, k)
      if (err.cert) ctx.issues.error(joinPath(p, 'cert'), entry['cert'], err.cert)
      if (err.key) ctx.issues.error(joinPath(p, 'key'), entry['key'], err.key)
      if (!err.cert && !err.key) out.push({ cert: c, key: k })
    })
  }
  if (raw['insecure_server'] === true && out.length > 0) {
    ctx.issues.warning('insecure_server', true, 'certificates are ignored because insecure_server is true')
  }
  return out
}

/** `shared_secret` / `cookie_secret`: base64 of exactly 32 bytes, no whitespace. */
export function checkSecrets(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): void {
  for (const key of ['shared_secret', 'cookie_secret']) {
    const v = raw[key]
    if (typeof v !== 'string') continue
    const path = sourceKey(raw, key)
    if (/\s/.test(v)) {
      ctx.issues.error(path, v, 'must not contain whitespace')
    } else if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(v) || Buffer.from(v, 'base64').length !== 32) {
      ctx.issues.error(path, v, 'expected base64 of 32 random bytes (e.g. `head -c32 /dev/urandom | base64`)')
    }
  }
  const auth = raw['metrics_basic_auth']
  const authProblem = typeof auth === 'string' ? metricsBasicAuthProblem(auth) : undefined
  if (authProblem !== undefined) ctx.issues.error('metrics_basic_auth', auth, authProblem)
}

/** Keeps known log field names, warning about (and dropping) the rest. */
export function checkLogFields(
  raw: Readonly<Record<string, unknown>>,
  key: 'access_log_fields' | 'authorize_log_fields',
  ctx: LoadContext,
): string[] {
  const known = key === 'access_log_fields' ? ACCESS_LOG_FIELDS : AUTHORIZE_LOG_FIELDS
  const fields = (raw[key] as string[] | undefined) ?? []
  return fields.filter((field, i) => {
    const dot = field.indexOf('.')
    const ok = known.includes(field) || (dot > 0 && field.slice(0, dot) === 'headers' && isHeaderName(field.slice(dot + 1)))
    if (!ok) ctx.issues.warning(indexPath(key, i), field, `unknown log field, ignored (known: ${known.join(', ')}, headers.<Name>)`)
    return ok
  })
}

/**
 * Global response headers, as Pomerium: the security defaults (HSTS only with TLS) when
 * `set_response_headers` (or `HEADERS`) is not set; otherwise exactly what it lists, so that
 * `{X-Frame-Options: DENY}` sends only that and `{}` sends none; a `disable` key sends none.
 */
export function globalResponseHeaders(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): Record<string, string> {
  if (raw['set_response_headers'] === undefined) {
    return securityHeaders(raw['insecure_server'] !== true && raw['autocert_use_staging'] !== true)
  }
  const set = readHeaderMap(raw['set_response_headers'], 'set_response_headers', ctx.issues, true)
  return set.disable ? {} : set.headers
}

/** Runtime flags merged over their defaults; unknown flags are warned about but kept. */
export function checkRuntimeFlags(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): Record<string, boolean> {
  const out: Record<string, boolean> = { ...DEFAULT_RUNTIME_FLAGS }
  const flags = raw['runtime_flags']
  if (!isRecord(flags) || flags === DEFAULT_RUNTIME_FLAGS) return out
  for (const [name, value] of Object.entries(flags)) {
    const p = joinPath('runtime_flags', name)
    const flag = value === true || value === 'true' ? true : value === false || value === 'false' ? false : undefined
    if (flag === undefined) {
      ctx.issues.error(p, value, 'expected true or false')
      continue
    }
    if (!(name in DEFAULT_RUNTIME_FLAGS)) ctx.issues.warning(p, undefined, `unknown runtime flag${suggestion(name, Object.keys(DEFAULT_RUNTIME_FLAGS))}`, 'key', 'unknown_key')
    out[name] = flag
  }
  return out
}

/** `jwt_claims_headers`: a map `Header: claim`, or a list of claims (header `x-pomerium-claim-<claim>`). */
export function checkClaimHeaders(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): Record<string, string> {
  const value = raw['jwt_claims_headers']
  const out: Record<string, string> = {}
  if (value === undefined) return out
  let entries: [string, unknown][]
  if (isRecord(value)) entries = Object.entries(value)
  else if (typeof value === 'string') entries = splitList(value).map((c) => [`x-pomerium-claim-${c}`, c])
  else if (Array.isArray(value)) entries = value.map((c) => [`x-pomerium-claim-${String(c)}`, c])
  else {
    ctx.issues.error('jwt_claims_headers', value, 'expected a map of Header: claim or a list of claims')
    return out
  }
  for (const [header, claim] of entries) {
    if (!isHeaderName(header) || typeof claim !== 'string' || claim === '') {
      ctx.issues.error(joinPath('jwt_claims_headers', header), claim, 'expected Header: claim with an RFC 9110 token header name')
      continue
    }
    out[header] = claim
  }
  return out
}

/** MCP domain lists must not contain empty entries. */
export function checkNonEmptyLists(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): void {
  for (const key of ['mcp_allowed_client_id_domains', 'mcp_allowed_as_metadata_domains']) {
    const list = raw[key]
    if (!Array.isArray(list)) continue
    list.forEach((v, i) => {
      if (typeof v !== 'string' || v.trim() === '') ctx.issues.error(indexPath(key, i), v, 'expected a non-empty domain')
    })
  }
}
