/**
 * `downstream_mtls` (Pomerium docs: Downstream mTLS): the settings checked at load time, with the loader's
 * messages (file, key path, what is expected), and turned into the verification policy the TLS
 * layer and the mTLS stage (src/proxy/client-cert.ts) use (`Config.downstreamMtls`): the trusted CAs, the CRLs,
 * `match_subject_alt_names` and `max_verify_depth`.
 */
import { X509Certificate } from 'node:crypto'
import type { MtlsEnforcement } from '../policy/index.js'
import { Pattern } from '../shared/pattern.js'
import { parseCrl, pemBlocks } from '../shared/x509.js'
import type { RevocationList } from '../shared/x509.js'
import type { IssueCollector } from './issues.js'

export type { MtlsEnforcement }

/**
 * `downstream_mtls.enforcement` when a client CA is configured (Pomerium docs: Downstream mTLS; default
 * `policy_with_default_deny`, whose deny rule joins every route policy), else undefined.
 */
export function mtlsEnforcementOf(raw: Readonly<Record<string, unknown>>): MtlsEnforcement | undefined {
  const m = raw['downstream_mtls']
  if (typeof m !== 'object' || m === null) return undefined
  const o = m as Record<string, unknown>
  if (o['ca'] === undefined && o['ca_file'] === undefined) return undefined
  const e = o['enforcement']
  return e === 'policy' || e === 'reject_connection' ? e : 'policy_with_default_deny'
}


export const SAN_TYPES = ['dns', 'email', 'ip_address', 'uri', 'user_principal_name'] as const
export type SanType = (typeof SAN_TYPES)[number]

export interface SanMatcher {
  readonly type: SanType
  readonly source: string
  readonly pattern: Pattern
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
  /** Each problem as `key path: what is expected`. */
  readonly errors: readonly string[]
  readonly warnings: readonly string[]
  /** The same problems with their key paths apart, for the loader's issues. */
  readonly problems: readonly MtlsProblem[]
}

/** A problem with `downstream_mtls`, at a key path (`downstream_mtls.crl`, `...match_subject_alt_names[0].dns`). */
export interface MtlsProblem {
  readonly severity: 'error' | 'warning'
  readonly path: string
  readonly message: string
}

/** Pomerium's default `max_verify_depth`: the leaf must be issued directly by a configured CA. */
export const DEFAULT_MAX_VERIFY_DEPTH = 1

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
  const problems: MtlsProblem[] = []
  const error = (path: string, message: string): void => void problems.push({ severity: 'error', path, message })
  const warning = (path: string, message: string): void => void problems.push({ severity: 'warning', path, message })
  // PEM read from a file is reported at the `_file` key, where the user can find it.
  const caPath = raw['ca_file'] !== undefined ? 'downstream_mtls.ca_file' : 'downstream_mtls.ca'
  const crlPath = raw['crl_file'] !== undefined ? 'downstream_mtls.crl_file' : 'downstream_mtls.crl'

  const anchors: X509Certificate[] = []
  const blocks = pemBlocks(caText)
  for (const b of blocks) {
    if (b.type !== 'CERTIFICATE') continue
    try {
      anchors.push(new X509Certificate(b.der))
    } catch (err) {
      error(caPath, `a certificate cannot be parsed (${(err as Error).message})`)
    }
  }
  if (anchors.length === 0 && problems.length === 0) error(caPath, 'expected PEM "CERTIFICATE" blocks; found none')

  const crls: RevocationList[] = []
  const crlText = raw['crl']
  if (typeof crlText === 'string' && crlText.trim() !== '') {
    const crlBlocks = pemBlocks(crlText).filter((b) => b.type === 'X509 CRL')
    if (crlBlocks.length === 0) error(crlPath, 'expected PEM "X509 CRL" blocks; found none')
    crlBlocks.forEach((b, i) => {
      try {
        const crl = parseCrl(b.der)
        crls.push(crl)
        if (crl.nextUpdate && crl.nextUpdate.getTime() < Date.now()) {
          warning(crlPath, `CRL ${i + 1} is past its nextUpdate (${crl.nextUpdate.toISOString()}); it is still used`)
        }
        if (!crl.signatureSupported) {
          error(crlPath, `CRL ${i + 1} uses an unsupported signature algorithm (${crl.signatureAlgorithm})`)
        }
      } catch (err) {
        error(crlPath, `CRL ${i + 1} cannot be parsed (${(err as Error).message})`)
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
        error(at, `expected {type: pattern} with one of ${SAN_TYPES.join(', ')}`)
        return
      }
      const [key, value] = Object.entries(entry)[0] as [string, unknown]
      const type = key.toLowerCase() as SanType
      if (!SAN_TYPES.includes(type)) {
        error(at, `unknown SAN type "${key}" (expected one of ${SAN_TYPES.join(', ')})`)
        return
      }
      if (typeof value !== 'string') {
        error(`${at}.${key}`, 'expected a regular expression string')
        return
      }
      const pattern = Pattern.compile(value, true)
      if (typeof pattern === 'string') {
        error(`${at}.${key}`, pattern)
        return
      }
      sanMatchers.push({ type, source: value, pattern })
    })
  }

  let maxVerifyDepth = DEFAULT_MAX_VERIFY_DEPTH
  const depth = raw['max_verify_depth']
  if (depth !== undefined && depth !== null) {
    if (typeof depth === 'number' && Number.isInteger(depth) && depth >= 0 && depth <= 0xffffffff) maxVerifyDepth = depth
    else error('downstream_mtls.max_verify_depth', 'expected a non-negative integer')
  }

  const e = raw['enforcement']
  const enforcement: MtlsEnforcement = e === 'policy' || e === 'reject_connection' ? e : 'policy_with_default_deny'

  const describe = (p: MtlsProblem): string => `${p.path}: ${p.message}`
  const errors = problems.filter((p) => p.severity === 'error').map(describe)
  return {
    enforcement,
    anchors,
    caPems: anchors.map((a) => a.toString()),
    crls,
    sanMatchers,
    maxVerifyDepth,
    broken: errors.length > 0 ? `downstream_mtls is invalid: ${errors.join('; ')}` : undefined,
    errors,
    warnings: problems.filter((p) => p.severity === 'warning').map(describe),
    problems,
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Load-time check of `downstream_mtls`: every problem the policy builder finds becomes a config
 * issue at its key path, so a config that would refuse every client certificate does not load
 * (a reload keeps the running config) instead of failing closed at run time.
 */
export function checkDownstreamMtls(raw: Readonly<Record<string, unknown>>, issues: IssueCollector): ClientCertPolicy | undefined {
  const policy = buildClientCertPolicy(raw['downstream_mtls'])
  if (!policy) return undefined
  for (const p of policy.problems) {
    if (p.severity === 'error') issues.error(p.path, undefined, p.message)
    else issues.warning(p.path, undefined, p.message)
  }
  return policy
}
