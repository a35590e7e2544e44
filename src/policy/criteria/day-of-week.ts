/**
 * `day_of_week`: today, in a time zone, is one of the listed days. Data: a day list (`*`,
 * `mon,wed`, `mon-fri`, `fri-mon`, full names, any case; also a YAML list of such strings) read
 * in UTC, or `{days: <list>, timezone: <IANA zone>}`. UTC is the default because a server's local
 * zone is not something a policy should silently depend on. Beyond Pomerium's open-source edition.
 */
import { parseDays, weekday, zoneClock } from '../clock.js'
import type { ZoneClock } from '../clock.js'
import { isPlainObject, typeName } from '../parse.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { CompileContext, RequestCriterion } from './types.js'

function dayMask(value: unknown, ctx: CompileContext, key?: string): number | undefined {
  const items = typeof value === 'string' ? [value] : value
  if (!Array.isArray(items) || items.length === 0 || !items.every((i) => typeof i === 'string')) {
    ctx.error(`expected days such as "mon-fri" or "mon,wed", got ${typeName(value)}`, key)
    return undefined
  }
  const mask = parseDays((items).join(','))
  if (typeof mask === 'string') {
    ctx.error(mask, key)
    return undefined
  }
  return mask
}

export const dayOfWeek: RequestCriterion = {
  name: 'day_of_week',
  subPath: 'none',
  session: false,
  outcomes: binary(R.dayOfWeekOk, R.dayOfWeekUnauthorized),
  compile(data, ctx) {
    let mask: number | undefined
    let clock: ZoneClock | undefined = (t) => t
    if (isPlainObject(data)) {
      let ok = true
      for (const key of Object.keys(data)) {
        if (key !== 'days' && key !== 'timezone') {
          ctx.error(`unknown key "${key}": expected days and timezone`, key)
          ok = false
        }
      }
      if (data['days'] === undefined) ctx.error('expected days, such as {days: mon-fri, timezone: Europe/Berlin}')
      else mask = dayMask(data['days'], ctx, 'days')
      const zone = data['timezone']
      if (zone !== undefined) {
        clock = typeof zone === 'string' ? zoneClock(zone) : undefined
        if (!clock) ctx.error(`expected an IANA time zone such as Europe/Berlin, got ${typeof zone === 'string' ? `"${zone}"` : typeName(zone)}`, 'timezone')
      }
      if (!ok) return undefined
    } else {
      mask = dayMask(data, ctx)
    }
    if (mask === undefined || !clock) return undefined
    const days = mask
    const wall = clock
    return (input) => ((days >> weekday(wall(input.now.getTime()))) & 1 ? OK : FAIL)
  },
}
