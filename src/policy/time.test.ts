/* eslint-disable no-restricted-imports -- tests run on node:test; the policy code itself stays free of node:* */
/**
 * The time criteria with fixed `now` values, across the daylight-saving changes of Europe/Berlin
 * in 2026 (clocks go 02:00 → 03:00 on 29 March and 03:00 → 02:00 on 25 October, both at 01:00 UTC).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { holds, input, ppl, pplErrors } from './test-helpers.js'

const at = (iso: string): ReturnType<typeof input> => input(undefined, { now: new Date(iso) })

test('time_of_day: office hours in Berlin, before and after the spring change', () => {
  const office = { time_of_day: { timezone: 'Europe/Berlin', after: '9:00 AM', before: '17:00' } }
  assert.equal(holds(office, at('2026-03-28T07:59:59Z')), false) // 08:59:59 CET
  assert.equal(holds(office, at('2026-03-28T08:00:00Z')), true) // 09:00 CET
  assert.equal(holds(office, at('2026-03-30T06:59:59Z')), false) // 08:59:59 CEST
  assert.equal(holds(office, at('2026-03-30T07:00:00Z')), true) // 09:00 CEST
  assert.equal(holds(office, at('2026-03-30T14:59:59Z')), true) // 16:59:59 CEST
  assert.equal(holds(office, at('2026-03-30T15:00:00Z')), false) // 17:00 CEST
})

test('time_of_day: the skipped hour (29 March) and the repeated hour (25 October)', () => {
  const spring = ppl({ allow: { or: [{ time_of_day: { timezone: 'Europe/Berlin', after: '02:30', before: '03:30' } }] } })
  // One compiled policy, evaluated across the change: the per-minute offset cache must follow it.
  assert.equal(spring.evaluate(at('2026-03-29T00:59:30Z')).allow, false) // 01:59:30 CET
  assert.equal(spring.evaluate(at('2026-03-29T01:00:00Z')).allow, true) // 03:00 CEST (02:30 never happened)
  assert.equal(spring.evaluate(at('2026-03-29T01:29:59Z')).allow, true) // 03:29:59 CEST
  assert.equal(spring.evaluate(at('2026-03-29T01:30:00Z')).allow, false) // 03:30 CEST
  assert.equal(spring.evaluate(at('2026-03-29T00:59:59Z')).allow, false) // back in time: 01:59:59 CET

  const autumn = ppl({ allow: { or: [{ time_of_day: { timezone: 'Europe/Berlin', after: '2AM', before: '3AM' } }] } })
  assert.equal(autumn.evaluate(at('2026-10-24T23:59:59Z')).allow, false) // 01:59:59 CEST
  assert.equal(autumn.evaluate(at('2026-10-25T00:30:00Z')).allow, true) // 02:30 CEST, first time
  assert.equal(autumn.evaluate(at('2026-10-25T00:59:59Z')).allow, true) // 02:59:59 CEST
  assert.equal(autumn.evaluate(at('2026-10-25T01:00:00Z')).allow, true) // 02:00 CET, second time
  assert.equal(autumn.evaluate(at('2026-10-25T01:30:00Z')).allow, true) // 02:30 CET
  assert.equal(autumn.evaluate(at('2026-10-25T02:00:00Z')).allow, false) // 03:00 CET
})

test('time_of_day: ranges crossing midnight, open ends, UTC', () => {
  const night = { time_of_day: { timezone: 'Europe/Berlin', after: '22:00', before: '06:00' } }
  assert.equal(holds(night, at('2026-06-15T21:00:00Z')), true) // 23:00 CEST
  assert.equal(holds(night, at('2026-06-15T03:59:59Z')), true) // 05:59:59
  assert.equal(holds(night, at('2026-06-15T04:00:00Z')), false) // 06:00
  assert.equal(holds(night, at('2026-06-15T12:00:00Z')), false)
  assert.equal(holds(night, at('2026-06-15T20:00:00Z')), true) // 22:00 inclusive
  const evening = { time_of_day: { timezone: 'UTC', after: '18:00:30' } }
  assert.equal(holds(evening, at('2026-06-15T18:00:29Z')), false)
  assert.equal(holds(evening, at('2026-06-15T23:59:59Z')), true)
  const morning = { time_of_day: { timezone: 'America/New_York', before: '12 PM' } }
  assert.equal(holds(morning, at('2026-06-15T15:59:00Z')), true) // 11:59 EDT
  assert.equal(holds(morning, at('2026-06-15T16:00:00Z')), false) // 12:00 EDT
  assert.equal(holds({ time_of_day: { timezone: 'UTC', after: '12 AM', before: '12:00:01 am' } }, at('2026-06-15T00:00:00Z')), true)
  assert.equal(holds({ time_of_day: { timezone: 'Asia/Kathmandu', after: '17:45', before: '17:46' } }, at('2026-06-15T12:00:30Z')), true) // +05:45
})

test('time_of_day errors', () => {
  const errors = (data: unknown): string[] => pplErrors({ allow: { or: [{ time_of_day: data }] } }, 'p')
  assert.deepEqual(errors({ after: '09:00' }), ['p.allow.or[0].time_of_day: timezone is required (an IANA zone such as Europe/Berlin, or UTC)'])
  assert.deepEqual(errors({ timezone: 'Mars/Olympus', after: '09:00' }), ['p.allow.or[0].time_of_day.timezone: expected an IANA time zone such as Europe/Berlin, got "Mars/Olympus"'])
  assert.deepEqual(errors({ timezone: 'UTC' }), ['p.allow.or[0].time_of_day: expected after, before, or both'])
  assert.deepEqual(errors({ timezone: 'UTC', after: '9:00', before: '09:00 AM' }), ['p.allow.or[0].time_of_day: after and before are the same time; the range would be empty'])
  for (const bad of ['25:00', '15', '13PM', '0 AM', '3:60', '3:04:60', 'noon', '', '9.30']) {
    assert.deepEqual(errors({ timezone: 'UTC', after: bad }), [`p.allow.or[0].time_of_day.after: expected a time such as 15:04, 15:04:05, 3:04 PM or 3PM, got "${bad}"`], bad)
  }
  assert.deepEqual(errors({ timezone: 'UTC', after: '09:00', until: '10:00' }), ['p.allow.or[0].time_of_day.until: unknown key "until": expected timezone, after and before'])
  assert.equal(errors('09:00-17:00').length, 1)
})

test('day_of_week: lists, ranges (wrapping), names, and time zones', () => {
  // 2026-06-15 is a Monday.
  assert.equal(holds({ day_of_week: 'mon-fri' }, at('2026-06-15T12:00:00Z')), true)
  assert.equal(holds({ day_of_week: 'mon-fri' }, at('2026-06-13T12:00:00Z')), false) // Saturday
  assert.equal(holds({ day_of_week: 'fri-mon' }, at('2026-06-13T12:00:00Z')), true)
  assert.equal(holds({ day_of_week: 'fri-mon' }, at('2026-06-17T12:00:00Z')), false) // Wednesday
  assert.equal(holds({ day_of_week: 'Monday, WEDNESDAY' }, at('2026-06-17T12:00:00Z')), true)
  assert.equal(holds({ day_of_week: ['tue', 'thu'] }, at('2026-06-17T12:00:00Z')), false)
  assert.equal(holds({ day_of_week: '*' }, at('2026-06-14T12:00:00Z')), true)
  assert.equal(holds({ day_of_week: 'sun' }, at('2026-06-14T23:59:59Z')), true) // UTC by default
  // Saturday 13:00 UTC is Sunday 01:00 in Auckland; Sunday 12:30 UTC is Monday there.
  const weekend = { day_of_week: { days: 'sat,sun', timezone: 'Pacific/Auckland' } }
  assert.equal(holds(weekend, at('2026-06-13T13:00:00Z')), true)
  assert.equal(holds(weekend, at('2026-06-14T12:30:00Z')), false)
  // Sunday 29 March 22:30 UTC is already Monday 00:30 in Berlin (CEST, after the change).
  assert.equal(holds({ day_of_week: { days: 'mon', timezone: 'Europe/Berlin' } }, at('2026-03-29T22:30:00Z')), true)
  assert.equal(holds({ day_of_week: { days: 'mon', timezone: 'Europe/Berlin' } }, at('2026-03-29T21:59:59Z')), false)
})

test('day_of_week errors', () => {
  const errors = (data: unknown): string[] => pplErrors({ allow: { or: [{ day_of_week: data }] } }, 'p')
  assert.deepEqual(errors('mon-funday'), ['p.allow.or[0].day_of_week: "mon-funday" is not a day of the week (mon, tuesday, mon-fri, *)'])
  assert.deepEqual(errors({ days: 'mon', timezone: 'Mars/Base' }), ['p.allow.or[0].day_of_week.timezone: expected an IANA time zone such as Europe/Berlin, got "Mars/Base"'])
  assert.deepEqual(errors({ day: 'mon' }), [
    'p.allow.or[0].day_of_week.day: unknown key "day": expected days and timezone',
    'p.allow.or[0].day_of_week: expected days, such as {days: mon-fri, timezone: Europe/Berlin}',
  ])
  assert.deepEqual(errors(5), ['p.allow.or[0].day_of_week: expected days such as "mon-fri" or "mon,wed", got a number'])
  assert.deepEqual(errors({ days: [] }), ['p.allow.or[0].day_of_week.days: expected days such as "mon-fri" or "mon,wed", got a list'])
})

test('date: after (inclusive) and before (exclusive), dates and date-times with offsets', () => {
  const h1 = { date: { after: '2026-01-01', before: '2026-07-01' } }
  assert.equal(holds(h1, at('2026-01-01T00:00:00Z')), true)
  assert.equal(holds(h1, at('2025-12-31T23:59:59.999Z')), false)
  assert.equal(holds(h1, at('2026-06-30T23:59:59.999Z')), true)
  assert.equal(holds(h1, at('2026-07-01T00:00:00Z')), false)
  const launch = { date: { after: '2026-06-15T14:00:00+02:00' } }
  assert.equal(holds(launch, at('2026-06-15T11:59:59.999Z')), false)
  assert.equal(holds(launch, at('2026-06-15T12:00:00Z')), true)
  assert.equal(holds({ date: { before: '2026-06-15T12:00:00.5Z' } }, at('2026-06-15T12:00:00.499Z')), true)
  assert.equal(holds({ date: { before: '2026-06-15T07:00-0500' } }, at('2026-06-15T12:00:00Z')), false)
  assert.deepEqual(ppl({ allow: { or: [{ date: { before: '2020-01-01' } }] } }).evaluate(at('2026-06-15T12:00:00Z')).allowReasons, ['date-unauthorized'])
})

test('date errors', () => {
  const errors = (data: unknown): string[] => pplErrors({ allow: { or: [{ date: data }] } }, 'p')
  const bad = (v: string): string => `p.allow.or[0].date.after: expected an ISO 8601 date (2026-03-29) or date-time with an offset (2026-03-29T09:00:00Z), got "${v}"`
  for (const v of ['2026-02-30', '2026-06-15T12:00:00', 'tomorrow', '2026-6-1', '2026-06-15T24:00:00Z', '2026-06-15T12:00:00+25:00']) assert.deepEqual(errors({ after: v }), [bad(v)], v)
  assert.deepEqual(errors({ after: '2026-07-01', before: '2026-01-01' }), ['p.allow.or[0].date: after is not earlier than before, so the criterion could never be true'])
  assert.deepEqual(errors({}), ['p.allow.or[0].date: expected after, before, or both'])
  assert.deepEqual(errors({ from: '2026-01-01' }), ['p.allow.or[0].date.from: unknown key "from": expected after or before'])
  assert.deepEqual(errors('2026-01-01'), ['p.allow.or[0].date: expected {after: <date>, before: <date>}, got a string'])
})
