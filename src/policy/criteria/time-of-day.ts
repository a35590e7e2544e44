/**
 * `time_of_day: {timezone, after, before}`: the wall-clock time in `timezone` (required, IANA) is
 * at or after `after` and before `before`. Times: `15:04`, `15:04:05`, `3:04 PM`, `3PM`. When
 * `after` is later than `before` the range crosses midnight (`after: 22:00, before: 06:00`).
 * Local time follows daylight-saving changes: during the hour that repeats in autumn both
 * occurrences count, and the hour skipped in spring never occurs. Beyond Pomerium's open-source
 * edition.
 */
import { parseTimeOfDay, timeOfDay, zoneClock } from '../clock.js'
import { isPlainObject, typeName } from '../parse.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { CompileContext, RequestCriterion } from './types.js'

function time(data: Record<string, unknown>, key: string, ctx: CompileContext): number | undefined | null {
  const value = data[key]
  if (value === undefined) return undefined
  const t = typeof value === 'string' ? parseTimeOfDay(value) : undefined
  if (t === undefined) {
    ctx.error(`expected a time such as 15:04, 15:04:05, 3:04 PM or 3PM, got ${typeof value === 'string' ? `"${value}"` : typeName(value)}`, key)
    return null
  }
  return t
}

export const timeOfDayCriterion: RequestCriterion = {
  name: 'time_of_day',
  subPath: 'none',
  session: false,
  outcomes: binary(R.timeOfDayOk, R.timeOfDayUnauthorized),
  compile(data, ctx) {
    if (!isPlainObject(data)) {
      ctx.error(`expected {timezone: <IANA zone>, after: <time>, before: <time>}, got ${typeName(data)}`)
      return undefined
    }
    let ok = true
    for (const key of Object.keys(data)) {
      if (key !== 'after' && key !== 'before' && key !== 'timezone') {
        ctx.error(`unknown key "${key}": expected timezone, after and before`, key)
        ok = false
      }
    }
    const zone = data['timezone']
    const clock = typeof zone === 'string' ? zoneClock(zone) : undefined
    if (zone === undefined) {
      ctx.error('timezone is required (an IANA zone such as Europe/Berlin, or UTC)')
      ok = false
    } else if (!clock) {
      ctx.error(`expected an IANA time zone such as Europe/Berlin, got ${typeof zone === 'string' ? `"${zone}"` : typeName(zone)}`, 'timezone')
      ok = false
    }
    const after = time(data, 'after', ctx)
    const before = time(data, 'before', ctx)
    if (!ok || !clock || after === null || before === null) return undefined
    if (after === undefined && before === undefined) {
      ctx.error('expected after, before, or both')
      return undefined
    }
    if (after !== undefined && after === before) {
      ctx.error('after and before are the same time; the range would be empty')
      return undefined
    }
    const from = after ?? 0
    const to = before ?? 86_400_000
    const crossesMidnight = from > to
    return (input) => {
      const t = timeOfDay(clock(input.now.getTime()))
      const inside = crossesMidnight ? t >= from || t < to : t >= from && t < to
      return inside ? OK : FAIL
    }
  },
}
