/**
 * `client_certificate`: the presented client certificate matches a certificate matcher
 * `{fingerprint, spki_hash, san_dns, san_email, san_uri}` (conditions AND-ed), or any matcher of
 * a list of them.
 *
 * - `fingerprint`: SHA-256 of the certificate, long form (`AB:CD:...`, 32 colon-separated pairs)
 *   or short form (64 hex digits); a string or a list (any).
 * - `spki_hash`: base64 SHA-256 of the SubjectPublicKeyInfo; a string or a list (any).
 * - `san_dns` (case-insensitive), `san_email`, `san_uri`: a string matcher that some SAN of that
 *   type must satisfy.
 *
 * Pins (fingerprint, SPKI hash) match any presented certificate: the TLS handshake proved the
 * client holds its key, as in Pomerium. SAN conditions only match a *valid* certificate, because
 * the SANs of an untrusted certificate are whatever its maker wrote (stricter than Pomerium,
 * which matters when enforcement is `policy` and untrusted certificates reach the policy).
 */
import { compileStringMatcher } from '../matchers.js'
import type { StringPredicate } from '../matchers.js'
import { isPlainObject, typeName } from '../parse.js'
import { R } from '../reasons.js'
import type { PolicyClientCertificate } from '../types.js'
import { FAIL, OK, binary, within } from './types.js'
import type { CompileContext, RequestCriterion } from './types.js'

type CertPredicate = (cert: PolicyClientCertificate) => boolean

const LONG_FINGERPRINT = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$/
const SHORT_FINGERPRINT = /^[0-9A-Fa-f]{64}$/
const SPKI_HASH = /^[A-Za-z0-9+/]{43}=$/
const KEYS = ['fingerprint', 'spki_hash', 'san_dns', 'san_email', 'san_uri']

function stringList(data: unknown, ctx: CompileContext, what: string, check: (s: string) => string | undefined): Set<string> | undefined {
  const list = typeof data === 'string' ? [data] : data
  if (!Array.isArray(list) || list.length === 0) {
    ctx.error(`expected a ${what} or a non-empty list of them, got ${typeName(data)}`)
    return undefined
  }
  const out = new Set<string>()
  let ok = true
  list.forEach((item, i) => {
    const value = typeof item === 'string' ? check(item) : undefined
    if (value === undefined) {
      ctx.error(`${typeof item === 'string' ? `"${item}"` : typeName(item)} is not a ${what}`, typeof data === 'string' ? undefined : `[${i}]`)
      ok = false
    } else {
      out.add(value)
    }
  })
  return ok ? out : undefined
}

function sanPredicate(match: StringPredicate, pick: (cert: PolicyClientCertificate) => readonly string[], fold: boolean): CertPredicate {
  return (cert) => {
    if (!cert.valid) return false
    const sans = pick(cert)
    for (let i = 0; i < sans.length; i++) if (match(fold ? (sans[i] as string).toLowerCase() : (sans[i] as string))) return true
    return false
  }
}

function compileMatcher(data: unknown, ctx: CompileContext): CertPredicate | undefined {
  if (!isPlainObject(data)) {
    ctx.error(`expected a certificate matcher object (${KEYS.join(', ')}) or a list of them, got ${typeName(data)}`)
    return undefined
  }
  const keys = Object.keys(data)
  if (keys.length === 0) {
    ctx.error(`the certificate matcher has no conditions (${KEYS.join(', ')}); to require any valid certificate use invalid_client_certificate in a deny rule`)
    return undefined
  }
  const predicates: CertPredicate[] = []
  let ok = true
  for (const key of keys) {
    const sub = within(ctx, key)
    const value = data[key]
    let predicate: CertPredicate | undefined
    switch (key) {
      case 'fingerprint': {
        const set = stringList(value, sub, 'SHA-256 fingerprint (AB:CD:... or 64 hex digits)', (s) =>
          LONG_FINGERPRINT.test(s) || SHORT_FINGERPRINT.test(s) ? s.replaceAll(':', '').toLowerCase() : undefined,
        )
        if (set) predicate = (cert) => set.has(cert.fingerprintSha256)
        break
      }
      case 'spki_hash': {
        const set = stringList(value, sub, 'base64 SHA-256 SPKI hash', (s) => (SPKI_HASH.test(s) ? s : undefined))
        if (set) predicate = (cert) => set.has(cert.spkiSha256)
        break
      }
      case 'san_dns': {
        const match = compileStringMatcher(value, sub, { canon: (s) => s.toLowerCase() })
        if (match) predicate = sanPredicate(match, (cert) => cert.sanDns, true)
        break
      }
      case 'san_email': {
        const match = compileStringMatcher(value, sub)
        if (match) predicate = sanPredicate(match, (cert) => cert.sanEmail, false)
        break
      }
      case 'san_uri': {
        const match = compileStringMatcher(value, sub)
        if (match) predicate = sanPredicate(match, (cert) => cert.sanUri, false)
        break
      }
      default:
        ctx.error(`unknown certificate matcher condition "${key}": expected ${KEYS.join(', ')}`, key)
    }
    if (predicate) predicates.push(predicate)
    else ok = false
  }
  if (!ok) return undefined
  return (cert) => {
    for (let i = 0; i < predicates.length; i++) if (!(predicates[i] as CertPredicate)(cert)) return false
    return true
  }
}

export const clientCertificate: RequestCriterion = {
  name: 'client_certificate',
  subPath: 'none',
  session: false,
  outcomes: binary(R.clientCertificateOk, R.clientCertificateUnauthorized),
  compile(data, ctx) {
    let matchers: CertPredicate[] | undefined
    if (Array.isArray(data)) {
      if (data.length === 0) {
        ctx.error('expected at least one certificate matcher')
        return undefined
      }
      const compiled = data.map((item, i) => compileMatcher(item, within(ctx, `[${i}]`)))
      if (compiled.every((m) => m !== undefined)) matchers = compiled
    } else {
      const one = compileMatcher(data, ctx)
      if (one) matchers = [one]
    }
    if (!matchers) return undefined
    const list = matchers
    return (input) => {
      const cert = input.clientCertificate
      if (cert === undefined || !cert.presented) return FAIL
      for (let i = 0; i < list.length; i++) if ((list[i] as CertPredicate)(cert)) return OK
      return FAIL
    }
  },
}
