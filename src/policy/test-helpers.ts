/** Fixtures for the policy tests: the identities of Pomerium docs: Conformance cases, request inputs and a YAML shorthand. */
import { parse } from 'yaml'
import { compilePolicy } from './compile.js'
import { decide } from './decide.js'
import type { CompiledPolicy, Decision, PolicyClientCertificate, PolicyInput, PolicySession, RouteAccess } from './types.js'

export const NOW = new Date('2026-06-15T12:00:00Z')

/** A route with none of the legacy access fields and no policy: it admits nobody. */
export const NO_ACCESS: RouteAccess = {
  allowPublicUnauthenticatedAccess: false,
  allowAnyAuthenticatedUser: false,
  corsAllowPreflight: false,
  allowedUsers: [],
  allowedDomains: [],
  allowedIdpClaims: {},
  policy: undefined,
}

export function session(userId: string, email: string, claims: Record<string, unknown> = {}, extra: Partial<PolicySession> = {}): PolicySession {
  return { sessionId: `s-${userId}`, userId, email, emailVerified: true, claims, ...extra }
}

export const alice = session('u-alice', 'alice@example.com', { groups: ['admins', 'eng'], department: ['engineering'], family_name: ['Smith'] })
export const bob = session('u-bob', 'bob@example.com', { groups: ['eng'] })
export const eve = session('u-eve', 'eve@other.org', { groups: ['administrators'] })

/** A GET / from 192.0.2.10 at NOW by `who` (undefined = anonymous), with overrides. */
export function input(who: PolicySession | undefined, overrides: Partial<PolicyInput> = {}): PolicyInput {
  return { session: who, method: 'GET', path: '/', headers: {}, clientIp: '192.0.2.10', now: NOW, ...overrides }
}

export const CERT_FINGERPRINT = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90'

export function cert(overrides: Partial<PolicyClientCertificate> = {}): PolicyClientCertificate {
  return {
    presented: true,
    valid: true,
    fingerprintSha256: CERT_FINGERPRINT,
    spkiSha256: 'q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=',
    sanDns: ['client.example.com'],
    sanEmail: ['alice@example.com'],
    sanUri: ['spiffe://example.com/alice'],
    ...overrides,
  }
}

/** Compiles PPL written as YAML (or a value), failing on errors. */
export function ppl(doc: string | object): CompiledPolicy {
  const { policy, errors } = compilePolicy(typeof doc === 'string' ? parse(doc) : doc)
  if (!policy) throw new Error(`policy did not compile: ${JSON.stringify(errors)}`)
  return policy
}

/** The errors of compiling PPL written as YAML (or a value), as `path: message` strings. */
export function pplErrors(doc: string | object, path?: string): string[] {
  const { policy, errors } = compilePolicy(typeof doc === 'string' ? parse(doc) : doc, path)
  if (policy && errors.length > 0) throw new Error('a policy was returned together with errors')
  return errors.map((e) => `${e.path}: ${e.message}`)
}

/** Compiles, evaluates and decides in one step. */
export function decision(doc: string | object | CompiledPolicy, i: PolicyInput): Decision {
  const policy = typeof doc === 'object' && 'evaluate' in doc ? (doc) : ppl(doc)
  return decide(policy.evaluate(i), policy.deviceTypes, i.session)
}

/** Whether one criterion is true for an input: `{allow: {or: [criterion]}}`. */
export function holds(criterion: object, i: PolicyInput): boolean {
  return ppl({ allow: { or: [criterion] } }).evaluate(i).allow
}
