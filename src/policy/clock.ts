/**
 * Wall-clock arithmetic for the time criteria (`date`, `day_of_week`, `time_of_day`).
 *
 * Local time comes from the IANA database through `Intl.DateTimeFormat`, so daylight-saving
 * changes are handled by the platform. Formatting costs microseconds, so each zone clock caches
 * the zone's UTC offset for the current minute: offsets only change on minute boundaries, so the
 * cache is exact, and a decision pays for `Intl` at most once a minute per criterion.
 */

const MINUTE = 60_000
const DAY = 86_400_000

/** A function from an instant (ms since the epoch) to the same wall-clock reading as if it were UTC. */
export type ZoneClock = (t: number) => number

/** A clock for an IANA time zone, or undefined when the zone is unknown. */
export function zoneClock(timeZone: string): ZoneClock | undefined {
  let format: Intl.DateTimeFormat
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      era: 'short',
    })
  } catch {
    return undefined
  }
  if (format.resolvedOptions().timeZone === 'UTC') return (t) => t
  let cachedMinute = Number.NaN
  let cachedOffset = 0
  return (t) => {
    const minute = Math.floor(t / MINUTE)
    if (minute !== cachedMinute) {
      cachedOffset = offsetAt(format, minute * MINUTE)
      cachedMinute = minute
    }
    return t + cachedOffset
  }
}

function offsetAt(format: Intl.DateTimeFormat, t: number): number {
  const parts: Partial<Record<Intl.DateTimeFormatPartTypes, string>> = {}
  for (const part of format.formatToParts(t)) parts[part.type] = part.value
  const year = Number(parts.year)
  const wall = new Date(0)
  wall.setUTCFullYear(parts.era === 'BC' || parts.era === 'B' ? 1 - year : year, Number(parts.month) - 1, Number(parts.day))
  wall.setUTCHours(Number(parts.hour), Number(parts.minute), Number(parts.second), 0)
  return wall.getTime() - t
}

/** Day of the week of a wall-clock reading: 0 = Sunday ... 6 = Saturday. */
export function weekday(wall: number): number {
  // 1970-01-01 was a Thursday.
  return (((Math.floor(wall / DAY) + 4) % 7) + 7) % 7
}

/** Milliseconds since local midnight of a wall-clock reading. */
export function timeOfDay(wall: number): number {
  return ((wall % DAY) + DAY) % DAY
}

const DAY_NAMES: ReadonlyMap<string, number> = new Map([
  ['sun', 0], ['sunday', 0],
  ['mon', 1], ['monday', 1],
  ['tue', 2], ['tues', 2], ['tuesday', 2],
  ['wed', 3], ['wednesday', 3],
  ['thu', 4], ['thur', 4], ['thurs', 4], ['thursday', 4],
  ['fri', 5], ['friday', 5],
  ['sat', 6], ['saturday', 6],
])

/**
 * Parses a day-of-week list: `*`, `mon,wed`, `mon-fri`, `fri-mon` (wraps), full names, any case.
 * Returns a 7-bit mask (bit 0 = Sunday) or an error message.
 */
export function parseDays(spec: string): number | string {
  let mask = 0
  for (const raw of spec.split(',')) {
    const item = raw.trim().toLowerCase()
    if (item === '*') {
      mask = 0x7f
      continue
    }
    const dash = item.indexOf('-')
    const from = DAY_NAMES.get(dash < 0 ? item : item.slice(0, dash).trim())
    const to = dash < 0 ? from : DAY_NAMES.get(item.slice(dash + 1).trim())
    if (from === undefined || to === undefined) return `"${raw.trim()}" is not a day of the week (mon, tuesday, mon-fri, *)`
    for (let d = from; ; d = (d + 1) % 7) {
      mask |= 1 << d
      if (d === to) break
    }
  }
  return mask
}

/**
 * Parses a time of day: `15:04`, `15:04:05`, `3:04 PM`, `3:04:05pm`, `3PM`. Returns milliseconds
 * since midnight or undefined.
 */
export function parseTimeOfDay(text: string): number | undefined {
  const m = /^\s*(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*([ap]\.?m\.?)?\s*$/i.exec(text)
  if (!m) return undefined
  let hour = Number(m[1])
  const minute = m[2] === undefined ? 0 : Number(m[2])
  const second = m[3] === undefined ? 0 : Number(m[3])
  const meridiem = m[4]?.replaceAll('.', '').toLowerCase()
  if (minute > 59 || second > 59) return undefined
  if (m[3] !== undefined && m[2] === undefined) return undefined
  if (meridiem === undefined) {
    // A bare hour (`15`) is ambiguous with 12-hour times; require minutes in 24-hour form.
    if (m[2] === undefined || hour > 23) return undefined
  } else {
    if (hour < 1 || hour > 12) return undefined
    hour = (hour % 12) + (meridiem === 'pm' ? 12 : 0)
  }
  return ((hour * 60 + minute) * 60 + second) * 1000
}

/**
 * Parses an ISO 8601 date (`2026-03-29`, midnight UTC) or date-time with an explicit offset
 * (`2026-03-29T09:00:00+02:00`, `...Z`). A date-time without offset is refused: it would depend
 * on the server's time zone. Returns ms since the epoch or undefined.
 */
export function parseIsoInstant(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2}))?$/.exec(text)
  if (!m) return undefined
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const date = new Date(Date.UTC(year, month - 1, day))
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined
  if (m[4] === undefined) return date.getTime()
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), m[6] === undefined ? 0 : Number(m[6])]
  if (hour > 23 || minute > 59 || second > 59) return undefined
  const fraction = m[7] === undefined ? 0 : Math.floor(Number(m[7]) * 1000)
  let offset = 0
  const zone = m[8] as string
  if (zone !== 'Z' && zone !== 'z') {
    const digits = zone.replace(':', '')
    const oh = Number(digits.slice(1, 3))
    const om = Number(digits.slice(3, 5))
    if (oh > 23 || om > 59) return undefined
    offset = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om) * MINUTE
  }
  return date.getTime() + ((hour * 60 + minute) * 60 + second) * 1000 + fraction - offset
}
