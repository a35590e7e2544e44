import type { MtlsEnforcement } from '../policy/index.js'

/**
 * `downstream_mtls.enforcement` when a client CA is configured (reference 3.8; default
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
