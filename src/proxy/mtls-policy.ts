/**
 * `downstream_mtls` settings turned into the verification policy the TLS layer and the mTLS
 * stage (client-cert.ts) use: the trusted CAs, the CRLs, `match_subject_alt_names` and
 * `max_verify_depth`, checked once per config. See client-cert.ts for who checks what.
 */
import { X509Certificate } from 'node:crypto'
import { Pattern } from '../shared/pattern.js'
import { parseCrl, pemBlocks } from './x509.js'
import type { RevocationList } from './x509.js'

export type MtlsEnforcement = 'policy_with_default_deny' | 'policy' | 'reject_connection'

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
  readonly errors: readonly string[]
  readonly warnings: readonly string[]
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
        if (!crl.signatureSupported) {
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
