/**
 * Portcullis' own endpoints on every route host (Pomerium docs: On every route host): the session callback, sign-out,
 * the user page and JSON, programmatic login, and the discovery document. They are answered by
 * Portcullis and never forwarded upstream.
 */
import { randomBytes } from 'node:crypto'
import { directoryEntryFor, policySession } from '../session/policy-session.js'
import type { DirectoryLookup } from '../session/directory.js'
import type { RouteConfig } from '../config/types.js'
import type { CompiledPolicy } from '../policy/index.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import { prefersJson } from '../ui/negotiate.js'
import { errorPage, routesPage, signOutConfirmPage, userPage } from '../ui/pages.js'
import { cleanup, cleanupAgain, cleanupTried, conflictMessage } from './cookie-conflict.js'
import { clearCookie, cookieValues, readCookie, setCookie } from '../session/cookies.js'
import { formFields, json, page, redirect, text } from './endpoint.js'
import type { EndpointHandler, EndpointRequest, EndpointResponse } from './endpoint.js'
import {
  openHandoff,
  PARAM_COOKIE_CONFLICT,
  PARAM_JWT,
  PARAM_PROGRAMMATIC,
  PARAM_REDIRECT_URI,
  PARAM_SESSION_ENCRYPTED,
  PARAM_SESSION_ID,
  signInUrl,
  signOutUrl,
  UsedOnce,
} from '../session/flow.js'
import type { SessionRefresher } from '../session/refresher.js'
import { allowedRedirect } from '../session/redirects.js'
import { userJson, userPageData } from './service.js'
import { findHandle, shouldRedirectToSignIn } from '../session/credentials.js'
import { portalJson, portalRoutes } from './routes-portal.js'
import type { PortalEntry } from './routes-portal.js'
import { verifySessionHandle } from '../session/session-handle.js'
import { checkSignOutToken, signOutToken, startedElsewhere } from './sign-out-csrf.js'
import { frontChannelLoggedOut, frontChannelLogoutParams, matchesSession } from './frontchannel-logout.js'
import { audienceIncludes, loadSession } from '../session/session-loader.js'
import type { Session, SessionStore } from '../session/session-store.js'
import { browserScheme, programmaticRedirects } from '../session/settings.js'
import type { AuthSettings } from '../session/settings.js'
import { SIGNED_URL_LIFETIME_S, verifySignedUrl } from '../session/signed-url.js'
import { WebAuthnEndpoints } from './webauthn.js'
import type { WebAuthnContext } from './webauthn.js'

interface RouteEndpointDeps {
  readonly settings: () => AuthSettings
  readonly secrets: Secrets
  readonly sessions: SessionStore
  readonly refresher: SessionRefresher
  readonly logger: Logger
  /** The route that owns `/` on a host (decides the identity provider), if any. */
  readonly routeForHost: (host: string) => RouteConfig | undefined
  /** `/.well-known/pomerium/jwks.json` of the current signing keys. */
  readonly jwks?: () => { readonly status: number; readonly headers: Readonly<Record<string, string>>; readonly body: string }
  /** The routes portal of the current config generation; without it the portal is not served. */
  readonly portal?: () => PortalSource
  /** Device identity pages (`/.pomerium/webauthn`, docs/devices.md); without them those paths are 404. */
  readonly webauthn?: WebAuthnEndpoints
  /** Directory groups, so the portal lists what `groups` rules allow (docs/directory.md). */
  readonly directory?: DirectoryLookup
}

/** What the routes portal reads of the current config generation. */
export interface PortalSource {
  /** Runtime flag `routes_portal` (default true). */
  readonly enabled: boolean
  readonly routes: readonly RouteConfig[]
  /** The route's compiled policy, as the authorizer uses it. */
  policyFor(route: RouteConfig): CompiledPolicy
}

const ROUTES_PAGE = '/.pomerium/routes'
/** Lifetime of a route host's sign-out CSRF cookie (as the authenticate host's, 12 h). */
const ROUTE_CSRF_MAX_AGE_S = 12 * 3600
const ROUTES_API = '/.pomerium/api/v1/routes'

export function isPortcullisPath(path: string): boolean {
  return path === '/.pomerium' || path.startsWith('/.pomerium/') || path === '/.well-known/pomerium' || path.startsWith('/.well-known/pomerium/')
}

export class RouteEndpoints implements EndpointHandler {
  readonly #deps: RouteEndpointDeps
  readonly #handoffs = new UsedOnce()

  constructor(deps: RouteEndpointDeps) {
    this.#deps = deps
  }

  handle(req: EndpointRequest): Promise<EndpointResponse> | undefined {
    if (!isPortcullisPath(req.path)) return undefined
    const settings = this.#deps.settings()
    return this.#dispatch(req, settings).catch((err: unknown) => {
      this.#deps.logger.error({ err, requestId: req.requestId }, 'route endpoint failed')
      return this.#error(req, 500, 'Internal Server Error', 'The request could not be completed because of an internal error.')
    })
  }

  async #dispatch(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const get = req.method === 'GET' || req.method === 'HEAD'
    switch (req.path) {
      case '/.well-known/pomerium':
      case '/.well-known/pomerium/':
        return get ? this.#discovery(req, settings) : this.#methodNotAllowed(req)
      case '/.well-known/pomerium/jwks.json': {
        if (!get) return this.#methodNotAllowed(req)
        const jwks = this.#deps.jwks?.()
        return jwks ? { status: jwks.status, headers: { ...jwks.headers, 'access-control-allow-origin': '*' }, body: jwks.body } : this.#error(req, 404, 'Not Found', 'No signing keys.')
      }
      case '/.pomerium':
        return redirect('/.pomerium/')
    }
    if (!settings.enabled) return this.#error(req, 404, 'Not Found', 'Sign-in is not configured on this Portcullis (idp_provider is not set).')
    switch (req.path) {
      case '/.pomerium/':
        return get ? this.#userPage(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/user':
        return get ? this.#userJson(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/callback':
      case '/.pomerium/callback/':
        return get ? this.#callback(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/sign_out':
        return get || req.method === 'POST' ? await this.#signOut(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/api/v1/login':
        return get ? this.#programmaticLogin(req, settings) : this.#methodNotAllowed(req)
      case ROUTES_PAGE:
      case ROUTES_API: {
        const portal = this.#portal()
        if (!portal) return this.#error(req, 404, 'Not Found', 'The routes portal is turned off (runtime flag routes_portal).')
        if (!get) return this.#methodNotAllowed(req)
        return req.path === ROUTES_PAGE ? this.#routesPage(req, settings, portal) : this.#routesJson(req, settings, portal)
      }
      default:
        if (this.#deps.webauthn && WebAuthnEndpoints.handles(req.path)) return this.#deps.webauthn.handle(req, this.#webauthnContext(req, settings))
        return this.#error(req, 404, 'Not Found', 'This Portcullis endpoint does not exist.')
    }
  }

  #webauthnContext(req: EndpointRequest, settings: AuthSettings): WebAuthnContext {
    return {
      origin: this.#origin(req),
      session: () => this.#session(req, settings),
      signIn: (returnTo) => {
        const idpId = this.#idpIdFor(req, settings)
        if (idpId === undefined) return this.#error(req, 404, 'Not Found', 'No route is configured for this host.')
        return redirect(signInUrl(settings, this.#deps.secrets.sharedSecret, returnTo, idpId).href)
      },
      error: (status, title, message) => this.#error(req, status, title, message),
    }
  }

  /** This host's origin as a browser reaches it. */
  #origin(req: EndpointRequest): string {
    return `${browserScheme(req.host, req.scheme)}://${req.authority.toLowerCase()}`
  }

  #discovery(req: EndpointRequest, settings: AuthSettings): EndpointResponse {
    const origin = this.#origin(req)
    return json(
      200,
      {
        issuer: `${origin}/`,
        authentication_callback_endpoint: settings.callbackUrl,
        jwks_uri: `${origin}/.well-known/pomerium/jwks.json`,
        frontchannel_logout_uri: `${origin}/.pomerium/sign_out`,
      },
      { 'access-control-allow-origin': '*', 'cache-control': 'max-age=60' },
    )
  }

  #idpIdFor(req: EndpointRequest, settings: AuthSettings): string | undefined {
    const route = this.#deps.routeForHost(req.host)
    return (route ? settings.providerFor(route) : settings.defaultProvider)?.id
  }

  async #session(req: EndpointRequest, settings: AuthSettings): Promise<Session | undefined> {
    const idpId = this.#idpIdFor(req, settings)
    if (idpId === undefined) return undefined
    const loaded = await loadSession({ headers: req.headers, query: req.query, host: req.host }, idpId, {
      sessions: this.#deps.sessions,
      sharedSecret: this.#deps.secrets.sharedSecret,
      cookieName: settings.cookieName,
    })
    return loaded.kind === 'ok' ? this.#deps.refresher.current(loaded.session) : undefined
  }

  async #userPage(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const session = await this.#session(req, settings)
    if (!session) {
      const idpId = this.#idpIdFor(req, settings)
      if (idpId === undefined) return this.#error(req, 404, 'Not Found', 'No route is configured for this host.')
      return redirect(signInUrl(settings, this.#deps.secrets.sharedSecret, `${this.#origin(req)}/.pomerium/`, idpId).href)
    }
    // The route's own sign-out takes a POST without a token, as Pomerium's does: it only ends a session.
    // The devices card only for people who have registered one: most users never meet devices.
    const registered = this.#deps.webauthn ? await this.#deps.webauthn.userDevices(session) : undefined
    const devices = registered && registered.list.length > 0 ? registered : undefined
    return page(
      200,
      userPage({
        ...userPageData(session, '/.pomerium/sign_out', ''),
        formActions: settings.formActions,
        ...(this.#portal() ? { routesUrl: ROUTES_PAGE } : {}),
        ...(devices ? { devices } : {}),
      }),
    )
  }

  #portal(): PortalSource | undefined {
    const portal = this.#deps.portal?.()
    return portal?.enabled === true ? portal : undefined
  }

  /** The routes this request's user may open (Pomerium docs: On every route host routes portal). */
  #portalEntries(req: EndpointRequest, settings: AuthSettings, portal: PortalSource, session: Session): PortalEntry[] {
    const candidates = portal.routes.map((route) => ({ route, policy: portal.policyFor(route), idpId: settings.providerFor(route)?.id }))
    const viewer = { session: policySession(session, directoryEntryFor(session, this.#deps.directory)), idpId: session.idpId, clientIp: req.clientIp, now: new Date(), clientCertificate: req.clientCertificate }
    const port = /:(\d+)$/.exec(req.authority)?.[1]
    return portalRoutes(candidates, viewer, { scheme: browserScheme(req.host, req.scheme), port: port === undefined ? undefined : Number(port) })
  }

  async #routesPage(req: EndpointRequest, settings: AuthSettings, portal: PortalSource): Promise<EndpointResponse> {
    const session = await this.#session(req, settings)
    if (!session) {
      const idpId = this.#idpIdFor(req, settings)
      if (idpId === undefined) return this.#error(req, 404, 'Not Found', 'No route is configured for this host.')
      // As the authorizer answers: a browser navigating signs in; scripts and token bearers get 401.
      const carriedToken = (findHandle(req.headers, req.query, settings.cookieName)?.source ?? 'cookie') !== 'cookie'
      if (!shouldRedirectToSignIn(req.headers, carriedToken)) return this.#error(req, 401, 'Unauthorized', 'Sign-in required.')
      return redirect(signInUrl(settings, this.#deps.secrets.sharedSecret, `${this.#origin(req)}${ROUTES_PAGE}`, idpId).href)
    }
    const claims = session.claims
    const str = (v: unknown): string => (typeof v === 'string' ? v : '')
    const entries = this.#portalEntries(req, settings, portal, session)
    return page(
      200,
      routesPage({
        user: str(claims['name']) || str(claims['email']) || session.userId,
        userPageUrl: '/.pomerium/',
        routes: entries.map((e) => ({
          title: e.title,
          description: e.json.description,
          from: e.json.from,
          logoUrl: e.json.logo_url,
          url: e.url,
          connectCommand: e.json.connect_command,
        })),
      }),
    )
  }

  async #routesJson(req: EndpointRequest, settings: AuthSettings, portal: PortalSource): Promise<EndpointResponse> {
    const session = await this.#session(req, settings)
    if (!session) return json(401, { error: 'sign-in required', request_id: req.requestId })
    return json(200, portalJson(this.#portalEntries(req, settings, portal, session)))
  }

  async #userJson(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const session = await this.#session(req, settings)
    if (!session) return json(401, { error: 'sign-in required', request_id: req.requestId })
    return json(200, userJson(session))
  }

  async #callback(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const url = new URL(`${this.#origin(req)}${req.path}${req.query}`)
    const problem = verifySignedUrl(url, this.#deps.secrets.sharedSecret)
    if (problem) return this.#error(req, 400, 'Bad Request', 'This sign-in callback link is invalid or has expired. Open the app again to sign in.')
    const params = url.searchParams
    const sealed = params.get(PARAM_SESSION_ENCRYPTED) ?? ''
    const opened = openHandoff(sealed, this.#deps.secrets.sharedSecret)
    if (!opened || !audienceIncludes(opened.handle.aud, req.host)) {
      return this.#error(req, 400, 'Bad Request', 'This sign-in callback does not carry a session for this host.')
    }
    const programmatic = params.get(PARAM_PROGRAMMATIC) === 'true'
    const target = allowedRedirect(params.get(PARAM_REDIRECT_URI) ?? '', programmatic ? programmaticRedirects(settings) : settings.redirects)
    if (!target) return this.#error(req, 400, 'Bad Request', 'The address to return to is not one of the configured routes.')
    // Single use: a callback URL replayed from history or a log cannot set the cookie again.
    if (!this.#handoffs.use(sealed, (SIGNED_URL_LIFETIME_S + 120) * 1000)) {
      return this.#error(req, 400, 'Bad Request', 'This sign-in callback link was already used. Open the app again.', target.href)
    }
    if (!(await this.#deps.sessions.get(opened.handle.jti))) {
      return this.#error(req, 400, 'Bad Request', 'This session has already ended. Open the app again to sign in.', target.href)
    }
    // Cookie tossing (cookie-conflict.ts): a copy of our cookie's name here, or one the route saw
    // beside ours, is deleted on the parent domains; if the route saw two again after that, say so.
    const conflict = { cookieName: settings.cookieName, cookie: settings.cookie, cookieSecret: this.#deps.secrets.cookieSecret, host: req.host }
    const flagged = params.get(PARAM_COOKIE_CONFLICT) === 'true'
    if (flagged && cleanupTried(req.headers, conflict)) {
      return this.#error(req, 409, 'Conflict', conflictMessage(settings.cookieName, req.host), target.href, cleanupAgain(conflict, target.pathname))
    }
    const seen = cookieValues(req.headers['cookie'], settings.cookieName) ?? []
    const cleanupCookies = flagged || seen.length > 0 ? cleanup(conflict, target.pathname) : []
    if (programmatic) target.searchParams.set(PARAM_JWT, opened.token)
    return redirect(target.href, [...cleanupCookies, setCookie(settings.cookieName, opened.token, settings.cookie)])
  }

  async #signOut(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    // The provider's front-channel logout (frontchannel-logout.ts): ends the session it names
    // here and now, whichever site loaded it; any other request goes on as a sign-out.
    if (req.method === 'GET') {
      const ended = await this.#frontChannelLogout(req, settings)
      if (ended) return ended
    }
    // Another site may link or post here (a cross-site GET carries Lax cookies); Pomerium ends
    // the session at once, Portcullis asks first, as the authenticate host does (Pomerium docs: Sign-out).
    const csrfName = `${settings.cookieName}_csrf`
    const csrfCookie = readCookie(req.headers['cookie'], csrfName)
    const { cookieSecret } = this.#deps.secrets
    const found = findHandle(req.headers, '', settings.cookieName)
    const handle = found ? verifySessionHandle(found.token, this.#deps.secrets.sharedSecret) : undefined
    const sessionId = handle && audienceIncludes(handle.aud, req.host) ? handle.jti : undefined
    const confirmed = req.method === 'POST' && checkSignOutToken(cookieSecret, formFields(req).get('csrf'), csrfCookie, sessionId)
    if (!confirmed && startedElsewhere(req, this.#origin(req))) {
      const token = csrfCookie ?? randomBytes(32).toString('base64url')
      const rendered = signOutConfirmPage('/.pomerium/sign_out', signOutToken(cookieSecret, token, sessionId), settings.formActions)
      // Path /.pomerium/: the cookie reaches this endpoint and never an upstream.
      const cookie = setCookie(csrfName, token, { domain: undefined, httpOnly: true, sameSite: 'lax', maxAgeS: ROUTE_CSRF_MAX_AGE_S, path: '/.pomerium/' })
      return page(200, rendered, csrfCookie === undefined ? [cookie] : undefined)
    }
    const params: Record<string, string> = {}
    if (sessionId !== undefined) params[PARAM_SESSION_ID] = sessionId
    if (settings.signoutRedirectUrl !== undefined) params[PARAM_REDIRECT_URI] = settings.signoutRedirectUrl
    return redirect(signOutUrl(settings, this.#deps.secrets.sharedSecret, params).href, [clearCookie(settings.cookieName, settings.cookie)])
  }

  /**
   * OpenID Connect Front-Channel Logout 1.0: when `iss` and `sid` name the provider and provider
   * session of the session this request carries, that session ends (in the databroker, so on
   * every route and the authenticate host) and the answer is an empty page for the provider's
   * iframe. Undefined when the request is not such a logout.
   */
  async #frontChannelLogout(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse | undefined> {
    const params = frontChannelLogoutParams(req.query)
    if (!params) return undefined
    const idpId = this.#idpIdFor(req, settings)
    if (idpId === undefined) return undefined
    // Credentials from headers only (the cookie the iframe carries), as the sign-out below reads them.
    const loaded = await loadSession({ headers: req.headers, query: '', host: req.host }, idpId, {
      sessions: this.#deps.sessions,
      sharedSecret: this.#deps.secrets.sharedSecret,
      cookieName: settings.cookieName,
    })
    if (loaded.kind !== 'ok' || !matchesSession(params, loaded.session)) return undefined
    await this.#deps.sessions.delete(loaded.session.id)
    this.#deps.logger.info({ requestId: req.requestId, sessionId: loaded.session.id, userId: loaded.session.userId }, 'signed out by front-channel logout')
    return frontChannelLoggedOut(params.iss, [clearCookie(settings.cookieName, settings.cookie)])
  }

  #programmaticLogin(req: EndpointRequest, settings: AuthSettings): EndpointResponse {
    const requested = new URLSearchParams(req.query.slice(1)).getAll(PARAM_REDIRECT_URI)
    if (requested.length === 0) return this.#error(req, 404, 'Not Found', 'pomerium_redirect_uri is required.')
    const target = requested.length === 1 ? allowedRedirect(requested[0] as string, programmaticRedirects(settings)) : undefined
    if (!target) {
      return this.#error(req, 400, 'Bad Request', 'pomerium_redirect_uri must be an http(s) URL on a host in programmatic_redirect_domain_whitelist.')
    }
    // A route host, or (for tunnel clients, which dial Portcullis itself, docs/tunnels.md) the
    // listener's own address. Never any other name: the callback below receives the session,
    // so it must be a host that reaches this Portcullis.
    if (!this.#deps.routeForHost(req.host) && !(req.localNames ?? []).includes(req.host)) {
      return this.#error(req, 404, 'Not Found', 'No route is configured for this host.')
    }
    const idpId = this.#idpIdFor(req, settings)
    if (idpId === undefined) return this.#error(req, 404, 'Not Found', 'No route is configured for this host.')
    const url = signInUrl(settings, this.#deps.secrets.sharedSecret, target.href, idpId, {
      pomerium_callback_uri: `${this.#origin(req)}/.pomerium/callback/`,
      [PARAM_PROGRAMMATIC]: 'true',
    })
    return text(200, url.href)
  }

  #methodNotAllowed(req: EndpointRequest): EndpointResponse {
    return this.#error(req, 405, 'Method Not Allowed', `${req.method} is not allowed here.`)
  }

  #error(req: EndpointRequest, status: number, title: string, message: string, retryUrl?: string, cookies?: readonly string[]): EndpointResponse {
    if (prefersJson(req.headers['accept'])) return { ...json(status, { error: message, request_id: req.requestId }), ...(cookies ? { cookies } : {}) }
    return page(status, errorPage({ status, title, message, requestId: req.requestId, ...(retryUrl !== undefined ? { retryUrl } : {}) }), cookies)
  }
}
