/**
 * `date: {after, before}`: the current instant is at or after `after` and before `before` (either
 * may be omitted). ISO 8601: a date (`2026-03-29`, midnight UTC) or a date-time with an offset
 * (`2026-03-29T09:00:00+02:00`). Beyond Pomerium's open-source edition (Enterprise has it).
 */
import { parseIsoInstant } from '../clock.js'
import { isPlainObject, typeName } from '../parse.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { CompileContext, RequestCriterion } from './types.js'

function instant(data: Record<string, unknown>, key: string, ctx: CompileContext): number | undefined | null {
  const value = data[key]
  if (value === undefined) return undefined
  const t = typeof value === 'string' ? parseIsoInstant(value) : undefined
  if (t === undefined) {
    ctx.error(`expected an ISO 8601 date (2026-03-29) or date-time with an offset (2026-03-29T09:00:00Z), got ${typeof value === 'string' ? `"${value}"` : typeName(value)}`, key)
    return null
  }
  return t
}

export const date: RequestCriterion = {
  name: 'date',
  subPath: 'none',
  session: false,
  outcomes: binary(R.dateOk, R.dateUnauthorized),
  compile(data, ctx) {
    if (!isPlainObject(data)) {
      ctx.error(`expected {after: <date>, before: <date>}, got ${typeName(data)}`)
      return undefined
    }
    let ok = true
    for (const key of Object.keys(data)) {
      if (key !== 'after' && key !== 'before') {
        ctx.error(`unknown key "${key}": expected after or before`, key)
        ok = false
      }
    }
    const after = instant(data, 'after', ctx)
    const before = instant(data, 'before', ctx)
    if (after === null || before === null || !ok) return undefined
    if (after === undefined && before === undefined) {
      ctx.error('expected after, before, or both')
      return undefined
    }
    if (after !== undefined && before !== undefined && after >= before) {
      ctx.error('after is not earlier than before, so the criterion could never be true')
      return undefined
    }
    const from = after ?? -Infinity
    const to = before ?? Infinity
    return (input) => {
      const t = input.now.getTime()
      return t >= from && t < to ? OK : FAIL
    }
  },
}
