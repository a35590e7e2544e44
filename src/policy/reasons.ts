/**
 * Reason codes: the strings criteria report and the authorize log prints (`allow-why-true`...).
 * They are Pomerium's where Pomerium has the criterion, so logs read the same; the time criteria
 * (Enterprise-only in Pomerium) follow the same `<name>-ok` / `<name>-unauthorized` pattern.
 */
import type { CriterionTrace, Decision, Evaluation, RuleTrace } from './types.js'

export const R = {
  accept: 'accept',
  reject: 'reject',
  userOk: 'user-ok',
  userUnauthorized: 'user-unauthorized',
  userUnauthenticated: 'user-unauthenticated',
  emailOk: 'email-ok',
  emailUnauthorized: 'email-unauthorized',
  domainOk: 'domain-ok',
  domainUnauthorized: 'domain-unauthorized',
  claimOk: 'claim-ok',
  claimUnauthorized: 'claim-unauthorized',
  groupsOk: 'groups-ok',
  groupsUnauthorized: 'groups-unauthorized',
  httpMethodOk: 'http-method-ok',
  httpMethodUnauthorized: 'http-method-unauthorized',
  httpPathOk: 'http-path-ok',
  httpPathUnauthorized: 'http-path-unauthorized',
  sourceIpOk: 'source-ip-ok',
  sourceIpUnauthorized: 'source-ip-unauthorized',
  corsRequest: 'cors-request',
  nonCorsRequest: 'non-cors-request',
  clientCertificateOk: 'client-certificate-ok',
  clientCertificateUnauthorized: 'client-certificate-unauthorized',
  clientCertificateRequired: 'client-certificate-required',
  invalidClientCertificate: 'invalid-client-certificate',
  validClientCertificate: 'valid-client-certificate',
  dateOk: 'date-ok',
  dateUnauthorized: 'date-unauthorized',
  dayOfWeekOk: 'day-of-week-ok',
  dayOfWeekUnauthorized: 'day-of-week-unauthorized',
  timeOfDayOk: 'time-of-day-ok',
  timeOfDayUnauthorized: 'time-of-day-unauthorized',
  deviceOk: 'device-ok',
  deviceUnauthorized: 'device-unauthorized',
  deviceUnauthenticated: 'device-unauthenticated',
} as const

const DESCRIPTIONS: Readonly<Record<string, string>> = {
  [R.accept]: 'this route admits everyone',
  [R.reject]: 'this route admits no one',
  [R.userOk]: 'your account is one this route allows',
  [R.userUnauthorized]: 'your account is not one this route allows',
  [R.userUnauthenticated]: 'you are not signed in',
  [R.emailOk]: 'your email address is one this route allows',
  [R.emailUnauthorized]: 'your email address is not one this route allows',
  [R.domainOk]: 'your email domain is one this route allows',
  [R.domainUnauthorized]: 'your email domain is not one this route allows',
  [R.claimOk]: 'your identity provider reports an attribute this route requires',
  [R.claimUnauthorized]: 'your identity provider does not report an attribute this route requires',
  [R.groupsOk]: 'you are in a group this route allows',
  [R.groupsUnauthorized]: 'you are not in a group this route allows',
  [R.httpMethodOk]: 'the request method matches the rule',
  [R.httpMethodUnauthorized]: 'this request method is not allowed here',
  [R.httpPathOk]: 'the request path matches the rule',
  [R.httpPathUnauthorized]: 'this path is not allowed here',
  [R.sourceIpOk]: 'your network address matches the rule',
  [R.sourceIpUnauthorized]: 'your network address is not one this route allows',
  [R.corsRequest]: 'this is a CORS preflight request',
  [R.nonCorsRequest]: 'this is not a CORS preflight request',
  [R.clientCertificateOk]: 'your client certificate is one this route allows',
  [R.clientCertificateUnauthorized]: 'your client certificate is not one this route allows',
  [R.clientCertificateRequired]: 'this route requires a client certificate and none was presented',
  [R.invalidClientCertificate]: 'your client certificate is not trusted',
  [R.validClientCertificate]: 'your client certificate is trusted',
  [R.dateOk]: 'the current date is within the allowed period',
  [R.dateUnauthorized]: 'this route is not available at this date',
  [R.dayOfWeekOk]: 'today is an allowed day',
  [R.dayOfWeekUnauthorized]: 'this route is not available on this day of the week',
  [R.timeOfDayOk]: 'the current time is within the allowed hours',
  [R.timeOfDayUnauthorized]: 'this route is not available at this time of day',
  [R.deviceOk]: 'your device is one this route allows',
  [R.deviceUnauthorized]: 'your device is not one this route allows',
  [R.deviceUnauthenticated]: 'this route needs a registered device, and this session has none of the required type',
}

/** Plain English for a reason code, for the 403 page. Unknown codes are returned as they are. */
export function describeReason(reason: string): string {
  return Object.hasOwn(DESCRIPTIONS, reason) ? (DESCRIPTIONS[reason] ?? reason) : reason
}

/** What a route without any allow rule answers everybody (a mistyped key leaves a route so). */
export const NO_ALLOW_RULE = 'this route has no allow rule, so it admits nobody'

/**
 * Criteria whose data names people (allowed users, emails, domains): a denied person is not
 * shown who else is allowed, only that they are not.
 */
const IDENTITY_CRITERIA = new Set(['user', 'email', 'domain', 'authenticated_user', 'accept', 'reject'])

/** Criterion data in words: `starts_with "/admin"`, `"admins"`, `has "a" and exclude "b"`. */
function dataText(data: unknown): string {
  if (typeof data === 'object' && data !== null && !Array.isArray(data)) {
    return Object.entries(data)
      .map(([k, v]) => `${k} ${JSON.stringify(v)}`)
      .join(' and ')
  }
  return JSON.stringify(data) ?? String(data)
}

/** The criterion as the policy has it, without the values of identity criteria. */
function criterionText(c: CriterionTrace): string {
  const base = c.name.split('/')[0] ?? c.name
  return IDENTITY_CRITERIA.has(base) ? c.name : `${c.name} ${dataText(c.data)}`
}

/** Why a failed allow criterion failed, naming what groups and claims it requires. */
function failedAllowText(c: CriterionTrace): string[] {
  const base = c.name.split('/')[0] ?? c.name
  if (base === 'claim' || base === 'groups') {
    const what = base === 'claim' ? `the claim ${c.name.slice('claim/'.length)}` : 'groups'
    const words = c.reasons.length > 0 ? c.reasons.map(describeReason) : [`the rule ${c.name} does not match`]
    return words.map((w) => `${w} (${what} ${listRequirement(c.data)})`)
  }
  // A device rule names credential ids and approval, not people: say which rule the device failed.
  if (base === 'device') return c.reasons.map((r) => `${describeReason(r)} (device ${dataText(c.data)})`)
  return c.reasons.map(describeReason)
}

/** A string-list matcher in words (`including "admins"`, `exactly "admins"`, `without "x"`). */
function listRequirement(data: unknown): string {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return `including ${JSON.stringify(data)}`
  const words: Record<string, string> = { has: 'including', is: 'exactly', exclude: 'without' }
  return Object.entries(data)
    .map(([k, v]) => `${words[k] ?? k} ${JSON.stringify(v)}`)
    .join(' and ')
}

/**
 * The reasons of a denial (403) in plain words, from a traced evaluation: which deny rule
 * matched, what an allow rule required that was not met (naming group and claim
 * requirements), or that the route has no allow rule at all. Without a trace, or for other
 * decisions, the reason codes are described one by one (`describeReason`).
 */
export function describeDenial(e: Evaluation, decision: Decision): string[] {
  if ((decision.kind !== 'deny' && decision.kind !== 'device-denied') || e.trace === undefined) return decision.reasons.map(describeReason)
  const out: string[] = []
  const negates = (r: RuleTrace): boolean => r.operator === 'not' || r.operator === 'nor'
  if (e.deny) {
    for (const rule of e.trace) {
      if (rule.action !== 'deny' || !rule.result) continue
      for (const c of rule.criteria) {
        if (c.result !== negates(rule)) out.push(`a deny rule of this route matches this request: ${negates(rule) ? 'not ' : ''}${criterionText(c)}`)
      }
    }
  } else {
    const allowRules = e.trace.filter((r) => r.action === 'allow' && r.criteria.length > 0)
    if (allowRules.length === 0) return [NO_ALLOW_RULE]
    for (const rule of allowRules) {
      for (const c of rule.criteria) if (c.result === negates(rule)) out.push(...failedAllowText(c))
    }
  }
  const unique = [...new Set(out)]
  return unique.length > 0 ? unique : decision.reasons.map(describeReason)
}
