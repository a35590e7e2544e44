/**
 * Reason codes: the strings criteria report and the authorize log prints (`allow-why-true`...).
 * They are Pomerium's where Pomerium has the criterion, so logs read the same; the time criteria
 * (Enterprise-only in Pomerium) follow the same `<name>-ok` / `<name>-unauthorized` pattern.
 */

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
}

/** Plain English for a reason code, for the 403 page. Unknown codes are returned as they are. */
export function describeReason(reason: string): string {
  return Object.hasOwn(DESCRIPTIONS, reason) ? (DESCRIPTIONS[reason] ?? reason) : reason
}
