/**
 * The authorize service's decision for one request (Pomerium docs: Result & reason propagation): find who is asking (session
 * cookie, Pomerium token, or a provider bearer token on routes that accept one), evaluate the
 * route's compiled policy, and turn the result into the proxy's answer, in Pomerium's order:
 * 495 for client-certificate problems, sign-in when a rule needed a session that is not there,
 * 403 with the reasons in plain words, otherwise allow with the identity headers for the upstream.
 * Denials are data (`Denial`); the front end that talks to the client renders them.
 *
 * Requests without credentials are decided synchronously: no store read, no promise.
 */
import { bearerToken } from '../session/bearer-sessions.js'
import type { BearerSessions } from '../session/bearer-sessions.js'
import { findHandle, shouldRedirectToSignIn } from '../session/credentials.js'
import type { FoundHandle } from '../session/credentials.js'
import { cookieIsAmbiguous } from '../session/cookies.js'
import { PARAM_COOKIE_CONFLICT, signInUrl } from '../session/flow.js'
import type { SessionRefresher } from '../session/refresher.js'
import { loadSession, VerifiedHandleCache } from '../session/session-loader.js'
import type { Session, SessionStore } from '../session/session-store.js'
import { browserScheme } from '../session/settings.js'
import type { AuthSettings, IdpSettings } from '../session/settings.js'
import { decide, describeDenial } from '../policy/index.js'
import { policySession, verifiedSessionEmail } from '../session/policy-session.js'
import type { DirectoryLookup } from '../session/directory.js'
import type { Decision, Evaluation, PolicyDevice, PolicyInput, PolicySession } from '../policy/index.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import { identitySession } from './identity/index.js'
import type { IdentitySession } from './identity/index.js'
import type { AuthorizePlans, RoutePlan } from './plans.js'
import type { DeviceStore } from '../session/devices.js'
import { signUrl } from '../session/signed-url.js'
import { PARAM_DEVICE_TYPE, PARAM_REDIRECT_URI } from '../session/flow.js'
import { UpstreamCredentialError } from './upstream-headers.js'
import type { Authorizer, CheckRequest, CheckResult, Denial } from './types.js'

export interface PolicyAuthorizerDeps {
  readonly settings: () => AuthSettings
  readonly plans: () => AuthorizePlans
  readonly secrets: Secrets
  readonly sessions: SessionStore
  readonly refresher: SessionRefresher
  readonly bearer?: BearerSessions
  readonly logger: Logger
  /** Device credentials (docs/devices.md); without them a device rule never sees a device. */
  readonly devices?: DeviceStore
  /** Directory users and groups (docs/directory.md); without it `groups` reads the token's claim. */
  readonly directory?: DirectoryLookup
}

const verifiedHandles = new VerifiedHandleCache()

/** Who is asking, as far as this request's credentials tell. */
interface Identity {
  readonly session: Session | undefined
  /** Credentials came in a header or the query (a script): never redirect, answer 401. */
  readonly carriedToken: boolean
}

const ANONYMOUS: Identity = { session: undefined, carriedToken: false }
const ROBOTS: Denial = { allow: false, status: 200, code: 'robots-txt', reason: 'robots.txt' }

/** A session as the policy reads it and as the upstream identity headers read it. */
interface SessionViews {
  readonly policy: PolicySession
  readonly identity: IdentitySession
  /** The directory generation the views were built from (-1: built without the directory). */
  readonly generation: number
}

/**
 * Sessions are immutable, and the session store hands out the same object for as long as a
 * session is unchanged: each is turned into its views once, not once per request.
 */
const sessionViews = new WeakMap<Session, SessionViews>()

function viewsOf(session: Session, directory: DirectoryLookup | undefined): SessionViews {
  const managed = directory?.manages(session.idpId) ? directory : undefined
  // -1 marks views built without the directory, so turning it on (a reload) rebuilds them.
  let views = sessionViews.get(session)
  if (!views || views.generation !== (managed ? managed.generation : -1)) {
    // A change anywhere in the directory rebuilds the views of the sessions used after it: a
    // member removed from a group loses it on the next request after the change is synced.
    const entry = managed?.lookup(session.userId, verifiedSessionEmail(session))
    const generation = managed ? managed.generation : -1
    views = { policy: policySession(session, entry), identity: identitySession(session, undefined, entry), generation }
    sessionViews.set(session, views)
  }
  return views
}

export function createPolicyAuthorizer(deps: PolicyAuthorizerDeps): Authorizer {
  const decideFor = (request: CheckRequest, plan: RoutePlan, settings: AuthSettings, idp: IdpSettings | undefined, who: Identity): CheckResult | Promise<CheckResult> => {
    // Only routes with a device rule read device records: every request, so that a removed or
    // revoked device loses its grants at once.
    if (plan.policy.deviceTypes.length > 0 && who.session && deps.devices) {
      const session = who.session
      return deps.devices.policyDevices(session.deviceCredentialIds, session.userId, deps.plans().devices).then(
        (devices) => decideWith(request, plan, settings, idp, who, devices),
        (err: unknown): CheckResult => {
          deps.logger.error({ err: err instanceof Error ? err.message : String(err), requestId: request.requestId }, 'device store unavailable')
          return { allow: false, status: 503, code: 'unavailable', reason: 'The device store is unavailable, so this device cannot be checked right now. Try again in a moment.' }
        },
      )
    }
    return decideWith(request, plan, settings, idp, who, undefined)
  }

  const decideWith = (
    request: CheckRequest,
    plan: RoutePlan,
    settings: AuthSettings,
    idp: IdpSettings | undefined,
    who: Identity,
    devices: readonly PolicyDevice[] | undefined,
  ): CheckResult | Promise<CheckResult> => {
    const views = who.session ? viewsOf(who.session, deps.directory) : undefined
    const input: PolicyInput = {
      session: views && devices ? { ...views.policy, devices } : views?.policy,
      method: request.method,
      path: request.path,
      headers: request.headers,
      clientIp: request.clientIp,
      ...(request.clientCertificate ? { clientCertificate: request.clientCertificate } : {}),
      now: new Date(),
    }
    const evaluation = plan.policy.evaluate(input, plan.showErrorDetails ? { trace: true } : undefined)
    const decision = decide(evaluation, plan.policy.deviceTypes, input.session)
    plan.logDecision?.(request, who.session, evaluation)
    if (decision.kind === 'allow') {
      const routing = who.session ? { routingKey: who.session.id, user: userOf(who.session) } : {}
      const headers = plan.upstreamHeaders(request, views?.identity)
      if (!(headers instanceof Promise)) return { allow: true, ...headers, ...routing }
      return headers.then(
        (h): CheckResult => ({ allow: true, ...h, ...routing }),
        (err: unknown): CheckResult => {
          deps.logger.error({ err, requestId: request.requestId }, 'upstream credential unavailable')
          const message = err instanceof UpstreamCredentialError ? err.publicMessage : 'An upstream credential could not be obtained.'
          return { allow: false, status: 502, code: 'upstream-credential', reason: message }
        },
      )
    }
    if (request.path === '/robots.txt' && !request.route.allowPublicUnauthenticatedAccess) return ROBOTS
    if (decision.kind === 'sign-in') return signIn(request, settings, idp, who, deps.secrets)
    if (decision.kind === 'device-enroll') return enrollDevice(request, plan, decision.deviceType, decision.reasons, who, deps.secrets)
    return denied(plan, decision, who.session, evaluation, input)
  }

  return {
    check(request: CheckRequest): CheckResult | Promise<CheckResult> {
      const plan = deps.plans().forRoute(request.route)
      const settings = deps.settings()
      const idp = settings.enabled ? settings.providerFor(request.route) : undefined
      if (plan.skipsIdentity) return decideFor(request, plan, settings, idp, ANONYMOUS)
      if (idp) {
        const bearer = settings.bearerFor(request.route)
        if (deps.bearer && (bearer.format === 'idp_access_token' || bearer.format === 'idp_identity_token')) {
          const token = bearerToken(request.headers['authorization'])
          if (token !== undefined) {
            return deps.bearer.session(token, bearer.format, idp, bearer.audiences).then((r) => {
              if (r.kind === 'ok') return decideFor(request, plan, settings, idp, { session: r.session, carriedToken: true })
              return r.kind === 'unavailable' ? { allow: false, status: 503, code: 'unavailable', reason: r.reason } : { allow: false, status: 401, code: 'invalid-credential', reason: r.reason }
            })
          }
        }
      }
      // No credentials at all: decide without touching the session store.
      const found = idp ? findHandle(request.headers, request.query, settings.cookieName) : undefined
      if (!idp || found === undefined) return decideFor(request, plan, settings, idp, ANONYMOUS)
      return identify(request, found, settings, idp, deps, !plan.needsSessionTokens).then(
        (who) => decideFor(request, plan, settings, idp, who),
        (err: unknown): CheckResult => {
          // Fail closed: without the store nobody's session can be verified, so nobody gets in.
          deps.logger.error({ err: err instanceof Error ? err.message : String(err), requestId: request.requestId }, 'session store unavailable')
          return { allow: false, status: 503, code: 'unavailable', reason: 'The session store is unavailable, so sign-in cannot be checked right now. Try again in a moment.' }
        },
      )
    },
  }
}

/** `found`: the request's credential, located once by `check`. */
async function identify(request: CheckRequest, found: FoundHandle, settings: AuthSettings, idp: IdpSettings, deps: PolicyAuthorizerDeps, slim: boolean): Promise<Identity> {
  const loaded = await loadSession(
    request,
    idp.id,
    {
      sessions: deps.sessions,
      sharedSecret: deps.secrets.sharedSecret,
      cookieName: settings.cookieName,
      verified: verifiedHandles,
      forRequest: slim,
    },
    found,
  )
  if (loaded.kind === 'ok') {
    const session = await deps.refresher.current(loaded.session)
    return { session, carriedToken: loaded.source !== 'cookie' }
  }
  return { session: undefined, carriedToken: loaded.kind === 'invalid' && loaded.source !== 'cookie' }
}

function signIn(request: CheckRequest, settings: AuthSettings, idp: IdpSettings | undefined, who: Identity, secrets: Secrets): CheckResult {
  if (!idp) {
    return {
      allow: false,
      status: 403,
      code: 'sign-in-not-configured',
      reason: 'This route needs a signed-in user and sign-in is not configured (idp_provider is not set), so access is denied.',
    }
  }
  if (!shouldRedirectToSignIn(request.headers, who.carriedToken)) {
    return who.carriedToken
      ? { allow: false, status: 401, code: 'invalid-credential', reason: 'The session token is not valid; sign in again.' }
      : { allow: false, status: 401, code: 'unauthenticated', reason: 'Unauthenticated' }
  }
  const original = `${browserScheme(request.host, request.scheme)}://${request.authority}${request.path}${request.query}`
  return {
    allow: false,
    status: 302,
    code: 'sign-in',
    reason: 'Sign-in required: redirecting to the sign-in page.',
    // Two session cookies (one tossed by a sibling domain): the route's callback cleans up or explains.
    location: signInUrl(settings, secrets.sharedSecret, original, idp.id, cookieIsAmbiguous(request.headers['cookie'], settings.cookieName) ? { [PARAM_COOKIE_CONFLICT]: 'true' } : {}).href,
  }
}

/**
 * A session without a device of the type the route needs: a browser goes to the signed
 * `/.pomerium/webauthn` page of this host to register or use one (Pomerium docs: Device
 * Identity), and comes back to the page it asked for. A script is told what is missing.
 */
function enrollDevice(request: CheckRequest, plan: RoutePlan, deviceType: string, reasons: readonly string[], who: Identity, secrets: Secrets): Denial {
  const origin = `${browserScheme(request.host, request.scheme)}://${request.authority}`
  const base = { allow: false as const, code: 'device-enrollment' as const, policyReasons: reasons, route: plan.label, ...(who.session ? { user: userOf(who.session) } : {}) }
  if (!shouldRedirectToSignIn(request.headers, who.carriedToken)) {
    return { ...base, status: 403, reason: `This app needs a registered device of type ${deviceType}; open it in a browser to register or use one.` }
  }
  const url = new URL(`${origin}/.pomerium/webauthn`)
  url.searchParams.set(PARAM_DEVICE_TYPE, deviceType)
  url.searchParams.set(PARAM_REDIRECT_URI, `${origin}${request.path}${request.query}`)
  return { ...base, status: 302, reason: 'A registered device is required: redirecting to the device page.', location: signUrl(url, secrets.sharedSecret).href }
}

function denied(
  plan: RoutePlan,
  decision: Exclude<Decision, { kind: 'allow' } | { kind: 'sign-in' } | { kind: 'device-enroll' }>,
  session: Session | undefined,
  evaluation: Evaluation,
  input: PolicyInput,
): Denial {
  const status = decision.status
  const message =
    status === 495
      ? 'This app needs a valid client certificate, and the request did not present one it accepts.'
      : status === 450
        ? 'You are not allowed to open this app from this device: its access policy requires another device, or an approved one.'
        : "You are not allowed to open this app: its access policy did not admit this request."
  // Which rule decided needs the trace; denials are the slow path, so evaluate once more with it.
  const described = describeDenial(evaluation.trace ? evaluation : plan.policy.evaluate(input, { trace: true }), decision)
  const pending = status === 450 && (input.session?.devices ?? []).some((d) => d.pendingApproval === true)
  const reasons = pending ? [...described, 'your device is registered and waits for an approver to approve it'] : described
  return {
    allow: false,
    status,
    code: status === 495 ? 'client-certificate' : status === 450 ? 'device-denied' : 'policy-denied',
    reason: message,
    reasons,
    policyReasons: decision.reasons,
    route: plan.label,
    ...(session ? { user: userOf(session) } : {}),
    ...(plan.showErrorDetails ? { details: explainEvaluation(evaluation) } : {}),
  }
}

/** Who a session is, in logs and on pages: the email, else the user id. */
function userOf(session: Session): string {
  const email = session.claims['email']
  return typeof email === 'string' ? email : session.userId
}

/** The full evaluation as text, for `show_error_details` and `portcullis policy explain`. */
export function explainEvaluation(e: Evaluation): string {
  const lines = [`allow: ${e.allow} (${e.allowReasons.join(', ') || 'no reasons'})`, `deny: ${e.deny} (${e.denyReasons.join(', ') || 'no reasons'})`]
  for (const rule of e.trace ?? []) {
    lines.push(`${rule.action} ${rule.operator}: ${rule.result}`)
    for (const c of rule.criteria) lines.push(`  ${c.result ? 'true ' : 'false'} ${c.name} ${JSON.stringify(c.data)} [${c.reasons.join(', ')}]`)
  }
  return lines.join('\n')
}
