/**
 * The registry of criteria: an explicit list rather than import side effects, so what the
 * language supports is visible in one place. To add a criterion, write one file exporting a
 * `CriterionDefinition`, add it here, and document it in docs/policy.md.
 */
import { accept } from './accept.js'
import { authenticatedUser } from './authenticated-user.js'
import { claim } from './claim.js'
import { clientCertificate } from './client-certificate.js'
import { corsPreflight } from './cors-preflight.js'
import { date } from './date.js'
import { dayOfWeek } from './day-of-week.js'
import { device } from './device.js'
import { domain } from './domain.js'
import { email } from './email.js'
import { groups } from './groups.js'
import { httpMethod } from './http-method.js'
import { httpPath } from './http-path.js'
import { invalidClientCertificate } from './invalid-client-certificate.js'
import { reject } from './reject.js'
import { sourceIp } from './source-ip.js'
import { timeOfDayCriterion } from './time-of-day.js'
import type { CriterionDefinition } from './types.js'
import { user } from './user.js'

export const CRITERIA: ReadonlyMap<string, CriterionDefinition> = new Map(
  [
    accept,
    reject,
    authenticatedUser,
    user,
    email,
    domain,
    claim,
    groups,
    httpMethod,
    httpPath,
    sourceIp,
    corsPreflight,
    clientCertificate,
    invalidClientCertificate,
    date,
    dayOfWeek,
    timeOfDayCriterion,
    device,
  ].map((c) => [c.name, c]),
)

/** Criteria of Pomerium that Portcullis does not implement (yet); named in the error message. */
export const UNSUPPORTED: ReadonlyMap<string, string> = new Map([
  ['pomerium_routes', 'internal /.pomerium routes are handled outside the route policy'],
  ['record', 'databroker record criteria are not supported'],
  ['mcp_tool', 'MCP routes are not supported'],
  ['ssh_username', 'SSH routes are not supported'],
  ['ssh_username_matches_email', 'SSH routes are not supported'],
  ['ssh_username_matches_claim', 'SSH routes are not supported'],
  ['ssh_publickey', 'SSH routes are not supported'],
  ['ssh_ca', 'SSH routes are not supported'],
])
