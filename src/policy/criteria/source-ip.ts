/**
 * `source_ip`: the client IP is in one of the listed addresses or CIDR ranges (IPv4 or IPv6; a
 * bare address is /32 or /128). A malformed client IP is in no range.
 */
import { cidrsContain, compileCidrs } from '../ip.js'
import { typeName } from '../parse.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { RequestCriterion } from './types.js'

export const sourceIp: RequestCriterion = {
  name: 'source_ip',
  subPath: 'none',
  session: false,
  outcomes: binary(R.sourceIpOk, R.sourceIpUnauthorized),
  compile(data, ctx) {
    const list = typeof data === 'string' ? [data] : data
    if (!Array.isArray(list) || list.length === 0 || !list.every((e) => typeof e === 'string')) {
      ctx.error(`expected an IP address or CIDR range, or a non-empty list of them, got ${Array.isArray(list) && list.length === 0 ? 'an empty list' : typeName(data)}`)
      return undefined
    }
    const set = compileCidrs(list)
    if ('error' in set) {
      ctx.error(set.error, typeof data === 'string' ? undefined : `[${set.index}]`)
      return undefined
    }
    return (input) => (cidrsContain(set, input.clientIp) ? OK : FAIL)
  },
}
