/**
 * `cors_preflight`: the request is a CORS preflight: OPTIONS with non-empty `Origin` and
 * `Access-Control-Request-Method` headers (`cors-request` / `non-cors-request`).
 */
import { R } from '../reasons.js'
import type { PolicyInput } from '../types.js'
import { FAIL, OK, binary, checkIgnoredData } from './types.js'
import type { RequestCriterion } from './types.js'

function present(input: PolicyInput, name: string): boolean {
  const value = input.headers[name]
  if (value === undefined) return false
  if (typeof value === 'string') return value !== ''
  return value.some((v) => v !== '')
}

export const corsPreflight: RequestCriterion = {
  name: 'cors_preflight',
  subPath: 'none',
  session: false,
  outcomes: binary(R.corsRequest, R.nonCorsRequest),
  compile(data, ctx) {
    checkIgnoredData(data, ctx, 'cors_preflight')
    return (input) => (input.method === 'OPTIONS' && present(input, 'access-control-request-method') && present(input, 'origin') ? OK : FAIL)
  },
}
