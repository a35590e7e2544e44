/**
 * The authenticate service (Pomerium docs: On the authenticate host, Stateful flow, Sign-out): everything served on the
 * `authenticate_service_url` host. It runs the provider login, owns the authenticate-domain
 * session cookie, hands sessions to route domains through signed, sealed, single-use URLs, and
 * ends sessions on sign-out (here and, through RP-initiated logout, at the provider).
 */
import { isIP } from 'node:net'
import { isBrowserLoopbackHost } from '../shared/loopback.js'
import { createHmac, randomBytes } from 'node:crypto'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import { prefersJson } from '../ui/negotiate.js'
import { errorPage, signedOutPage, signOutConfirmPage, userPage } from '../ui/pages.js'
import { cleanup, cleanupAgain, cleanupTried, conflictMessage } from './cookie-conflict.js'
import type { ConflictContext } from './cookie-conflict.js'
import { clearCookie, cookieValues, readCookie, setCookie } from '../session/cookies.js'
import type { CookieOptions } from '../session/cookies.js'
import { shouldRedirectToSignIn } from '../session/credentials.js'
import { formFields, json, page, redirect, text } from './endpoint.js'
import type { EndpointHandler, EndpointRequest, EndpointResponse } from './endpoint.js'
import {
  addTraceContext,
  handleFor,
  PARAM_CALLBACK_URI,
  PARAM_COOKIE_CONFLICT,
  PARAM_IDP_ID,
  PARAM_PROGRAMMATIC,
  PARAM_REDIRECT_URI,
  PARAM_SESSION_ENCRYPTED,
  PARAM_SESSION_ID,
  sealHandoff,
  signOutUrl,
} from '../session/flow.js'
import { isIdentityProviderError } from '../idp/provider.js'
import type { IdentityProvider, TokenSet } from '../idp/provider.js'
import { randomCodeVerifier, randomNonce } from '../idp/oidc.js'
import { createState, STATE_LIFETIME_S, verifyState } from './oauth-state.js'
import type { ProviderRegistry } from '../session/provider-registry.js'
import { allowedRedirect } from '../session/redirects.js'
import { open, seal } from '../session/sealed.js'
import { signSessionHandle, verifySessionHandle } from '../session/session-handle.js'
import { checkSignOutToken, signOutToken } from './sign-out-csrf.js'
import { loadSession } from '../session/session-loader.js'
import type { SessionRefresher } from '../session/refresher.js'
import { tokenExpiry } from '../session/refresh.js'
import type { Session, SessionStore } from '../session/session-store.js'
import { browserScheme, programmaticRedirects } from '../session/settings.js'
import type { AuthSettings } from '../session/settings.js'
import { signUrl, verifySignedUrl } from '../session/signed-url.js'
import type { SignedUrlProblem } from '../session/signed-url.js'
import { groupsOf, userFromClaims } from '../session/users.js'

export interface AuthenticateDeps {
  readonly settings: () => AuthSettings
  readonly secrets: Secrets
  readonly sessions: SessionStore
  readonly providers: ProviderRegistry
  readonly refresher: SessionRefresher
  readonly logger: Logger
  /** Back-channel logout (OpenID Connect Back-Channel Logout 1.0), when wired. */
  readonly backchannelLogout?: (req: EndpointRequest, settings: AuthSettings) => Promise<EndpointResponse>
}

const SIGNED_URL_PROBLEMS: Readonly<Record<SignedUrlProblem, string>> = {
  missing: 'This sign-in link is not signed. Open the app you wanted again to get a fresh link.',
  malformed: 'This sign-in link is malformed. Open the app you wanted again to get a fresh link.',
  'bad-signature': 'This sign-in link has been altered or was not issued by this Portcullis. Open the app you wanted again.',
  expired: 'This sign-in link has expired (links are valid for five minutes). Open the app you wanted again.',
  'not-yet-valid': 'This sign-in link is not valid yet; check the clocks of your servers.',
}

/** The PKCE verifier and nonce of one sign-in, sealed in a cookie named after its state. */
interface LoginSecrets {
  readonly verifier: string | undefined
  readonly nonce: string
  readonly idpId: string
}

const SIGN_IN_PATH = '/.pomerium/sign_in'

/** CSRF cookie lifetime, as Pomerium's (12 h). */
const CSRF_MAX_AGE_S = 12 * 3600

export class AuthenticateService implements EndpointHandler {
  readonly #deps: AuthenticateDeps

  constructor(deps: AuthenticateDeps) {
    this.#deps = deps
  }

  handle(req: EndpointRequest): Promise<EndpointResponse> | undefined {
    const settings = this.#deps.settings()
    if (!settings.enabled || req.host !== settings.authenticateHost) return undefined
    return this.#dispatch(req, settings).catch((err: unknown) => {
      this.#deps.logger.error({ err, requestId: req.requestId }, 'authenticate endpoint failed')
      return this.#error(req, 500, 'Internal Server Error', 'Sign-in could not be completed because of an internal error.')
    })
  }

  async #dispatch(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const get = req.method === 'GET' || req.method === 'HEAD'
    const getOrPost = get || req.method === 'POST'
    switch (req.path) {
      case '/':
      case '/.pomerium':
        return redirect('/.pomerium/')
      case '/robots.txt':
        return text(200, 'User-agent: *\nDisallow: /\n')
      case '/oauth2/callback':
        return getOrPost ? this.#callback(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/sign_in':
        return this.#signIn(req, settings)
      case '/.pomerium/sign_out':
        return getOrPost ? this.#signOut(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/signed_out':
        return this.#signedOut(settings)
      case '/.pomerium/':
        return get ? this.#userPage(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/user':
        return get ? this.#userJson(req, settings) : this.#methodNotAllowed(req)
      case '/.pomerium/backchannel_logout':
        if (req.method !== 'POST') return this.#methodNotAllowed(req)
        return this.#deps.backchannelLogout ? this.#deps.backchannelLogout(req, settings) : json(404, { error: 'back-channel logout is not enabled' })
      default:
        return this.#error(req, 404, 'Not Found', 'There is nothing here. Open the app you wanted; it will send you to sign in when needed.')
    }
  }

  // --- sign-in -------------------------------------------------------------------------

  async #signIn(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const url = this.#canonicalUrl(req, settings)
    const problem = verifySignedUrl(url, this.#deps.secrets.sharedSecret)
    if (problem) {
      // Retrying means going back to the app, which issues a fresh link; offered only for our own hosts.
      const back = allowedRedirect(url.searchParams.get(PARAM_REDIRECT_URI) ?? '', settings.redirects)?.href
      return this.#error(req, 400, 'Bad Request', SIGNED_URL_PROBLEMS[problem], back)
    }
    const params = url.searchParams
    const programmatic = params.get(PARAM_PROGRAMMATIC) === 'true'
    const policy = programmatic ? programmaticRedirects(settings) : settings.redirects
    const redirectUri = allowedRedirect(params.get(PARAM_REDIRECT_URI) ?? '', policy)
    if (!redirectUri) return this.#error(req, 400, 'Bad Request', 'The address to return to after sign-in is not one of the configured routes.')
    const idpId = params.get(PARAM_IDP_ID) ?? ''
    const provider = this.#deps.providers.get(settings, idpId)
    if (!provider) return this.#error(req, 400, 'Bad Request', 'This sign-in link names an identity provider that is no longer configured. Open the app you wanted again.')

    const session = await this.#currentSession(req, settings, idpId)
    if (!session) {
      if (!shouldRedirectToSignIn(req.headers, false)) return json(401, { error: 'sign-in required', request_id: req.requestId })
      // A session cookie that is here but not a session is stale, planted or tossed; the
      // copies on parent domains go too, and after one clean-up a conflict is explained.
      const seen = cookieValues(req.headers['cookie'], settings.cookieName) ?? []
      const conflict = this.#conflictContext(settings)
      if (seen.length > 1 && cleanupTried(req.headers, conflict)) {
        return this.#error(req, 409, 'Conflict', conflictMessage(settings.cookieName, settings.authenticateHost), redirectUri.href, cleanupAgain(conflict, SIGN_IN_PATH))
      }
      return this.#startLogin(req, settings, provider, idpId, url.href, seen.length > 0 ? cleanup(conflict, SIGN_IN_PATH) : [])
    }
    if (redirectUri.hostname.toLowerCase() === settings.authenticateHost) return redirect(redirectUri.href)

    let callback: URL
    const callbackParam = params.get(PARAM_CALLBACK_URI)
    if (callbackParam !== null) {
      const c = allowedRedirect(callbackParam, settings.redirects) ?? listenerAddressCallback(callbackParam, programmatic)
      if (!c || (c.pathname !== '/.pomerium/callback/' && c.pathname !== '/.pomerium/callback')) {
        return this.#error(req, 400, 'Bad Request', 'The callback address of this sign-in link is not a route callback.')
      }
      callback = new URL(`${c.origin}/.pomerium/callback/`)
    } else {
      callback = new URL(`${browserScheme(redirectUri.hostname, req.scheme)}://${redirectUri.host}/.pomerium/callback/`)
    }
    const audience = [settings.authenticateHost, redirectUri.hostname.toLowerCase(), callback.hostname.toLowerCase()]
    if (settings.cookie.domain) audience.push(`.${settings.cookie.domain.replace(/^\./, '').toLowerCase()}`)
    const handle = handleFor(session, settings.authenticateHost, audience, undefined)
    callback.searchParams.set(PARAM_SESSION_ENCRYPTED, sealHandoff(handle, this.#deps.secrets.sharedSecret))
    callback.searchParams.set(PARAM_REDIRECT_URI, redirectUri.href)
    if (programmatic) callback.searchParams.set(PARAM_PROGRAMMATIC, 'true')
    if (params.get(PARAM_COOKIE_CONFLICT) === 'true') callback.searchParams.set(PARAM_COOKIE_CONFLICT, 'true')
    addTraceContext(callback)
    return redirect(signUrl(callback, this.#deps.secrets.sharedSecret).href)
  }

  /** The authenticate-domain session for `idpId`, refreshed if needed; undefined means sign in. */
  async #currentSession(req: EndpointRequest, settings: AuthSettings, idpId: string): Promise<Session | undefined> {
    const loaded = await loadSession(
      { headers: req.headers, query: '', host: settings.authenticateHost },
      idpId,
      { sessions: this.#deps.sessions, sharedSecret: this.#deps.secrets.sharedSecret, cookieName: settings.cookieName },
    )
    if (loaded.kind !== 'ok' || loaded.source !== 'cookie') return undefined
    return this.#deps.refresher.current(loaded.session)
  }

  #conflictContext(settings: AuthSettings): ConflictContext {
    return { cookieName: settings.cookieName, cookie: settings.cookie, cookieSecret: this.#deps.secrets.cookieSecret, host: settings.authenticateHost }
  }

  async #startLogin(
    req: EndpointRequest,
    settings: AuthSettings,
    provider: IdentityProvider,
    idpId: string,
    signInHref: string,
    cleanupCookies: readonly string[],
  ): Promise<EndpointResponse> {
    const { cookieSecret } = this.#deps.secrets
    const csrfName = `${settings.cookieName}_csrf`
    const { state, csrfToken } = createState(signInHref, cookieSecret, undefined, readCookie(req.headers['cookie'], csrfName))
    const nonce = randomNonce()
    let verifier: string | undefined
    let target: URL
    try {
      verifier = (await provider.needsPkce()) ? randomCodeVerifier() : undefined
      target = await provider.authorizationUrl({ redirectUri: settings.callbackUrl, state, nonce, ...(verifier ? { codeVerifier: verifier } : {}) })
    } catch (err) {
      this.#deps.logger.error({ err: isIdentityProviderError(err) ? err.message : err, idpId }, 'could not start sign-in at the identity provider')
      return this.#error(req, 502, 'Bad Gateway', 'The identity provider could not be reached. Try again in a moment.', this.#retry(signInHref))
    }
    const formPost = (provider as { callbackMethod?: string }).callbackMethod === 'POST'
    const flowCookie: CookieOptions = { domain: undefined, httpOnly: true, sameSite: formPost ? 'none' : 'lax', maxAgeS: STATE_LIFETIME_S * 2 }
    const secrets: LoginSecrets = { verifier, nonce, idpId }
    return redirect(target.href, [
      // A planted or stale session cookie never survives into the new sign-in (hostile-input case: sessions / cookies / csrf).
      clearCookie(settings.cookieName, settings.cookie),
      ...cleanupCookies,
      setCookie(csrfName, csrfToken, { ...flowCookie, maxAgeS: CSRF_MAX_AGE_S }),
      setCookie(this.#pkceCookieName(settings, state), seal(JSON.stringify(secrets), cookieSecret, `login|${state}`), flowCookie),
    ])
  }

  #pkceCookieName(settings: AuthSettings, state: string): string {
    return `${settings.cookieName}_pkce_${createHmac('sha256', this.#deps.secrets.cookieSecret).update(state).digest('base64url').slice(0, 16)}`
  }

  async #callback(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const params = new URLSearchParams(req.query.slice(1))
    if (req.method === 'POST') for (const [k, v] of formFields(req)) params.append(k, v)
    const stateParam = params.getAll('state')
    const error = params.get('error')
    const verified = stateParam.length === 1 ? verifyState(stateParam[0] as string, readCookie(req.headers['cookie'], `${settings.cookieName}_csrf`), this.#deps.secrets.cookieSecret) : undefined
    const signInHref = verified && 'redirectUrl' in verified ? verified.redirectUrl : undefined
    const retry = signInHref !== undefined ? this.#retry(signInHref) : undefined
    if (error !== null) {
      const description = params.get('error_description')
      const status = error === 'access_denied' || error === 'unauthorized_client' ? 401 : 400
      return this.#error(req, status, status === 401 ? 'Unauthorized' : 'Bad Request', `The identity provider refused the sign-in: ${error}${description ? ` (${description})` : ''}.`, retry)
    }
    if (params.getAll('code').length !== 1) return this.#error(req, 400, 'Bad Request', 'The identity provider sent no authorization code.', retry)
    if (!verified) return this.#error(req, 400, 'Bad Request', 'The sign-in state is missing or malformed.')
    if ('problem' in verified) {
      const message =
        verified.problem === 'csrf-mismatch'
          ? 'Invalid CSRF token: this sign-in was started in another browser, or its cookie was lost. Start again from the app.'
          : verified.problem === 'expired'
            ? 'This sign-in took too long. Start again from the app.'
            : 'The sign-in state has been altered.'
      return this.#error(req, 400, 'Bad Request', message)
    }
    const state = stateParam[0] as string
    const cookieName = this.#pkceCookieName(settings, state)
    const sealed = readCookie(req.headers['cookie'], cookieName)
    const opened = sealed !== undefined ? open(sealed, this.#deps.secrets.cookieSecret, `login|${state}`) : undefined
    const login = opened !== undefined ? parseLoginSecrets(opened) : undefined
    const clearFlow = clearCookie(cookieName, { domain: undefined, httpOnly: true, sameSite: 'lax', maxAgeS: 0 })
    if (!login) return this.#error(req, 400, 'Bad Request', 'This sign-in was already completed or its cookie is missing. Start again from the app.', retry, [clearFlow])
    const provider = this.#deps.providers.get(settings, login.idpId)
    if (!provider) return this.#error(req, 400, 'Bad Request', 'The identity provider of this sign-in is no longer configured.', retry, [clearFlow])

    const callbackUrl = new URL(settings.callbackUrl)
    for (const [k, v] of params) callbackUrl.searchParams.append(k, v)
    let tokens: TokenSet
    try {
      tokens = await provider.redeem({
        callbackUrl,
        redirectUri: settings.callbackUrl,
        expectedState: state,
        expectedNonce: login.nonce,
        ...(login.verifier !== undefined ? { codeVerifier: login.verifier } : {}),
      })
    } catch (err) {
      const e = isIdentityProviderError(err) ? err : undefined
      this.#deps.logger.warn({ requestId: req.requestId, code: e?.code, err: e?.message ?? String(err) }, 'sign-in callback failed')
      const detail = e?.oauthError !== undefined ? `${e.oauthError}${e.oauthErrorDescription ? ` (${e.oauthErrorDescription})` : ''}` : (e?.message ?? 'unexpected error')
      const status = e?.code === 'ERR_IDP_ACCESS_DENIED' ? 401 : e?.code === 'ERR_IDP_DISCOVERY_FAILED' ? 502 : 400
      return this.#error(req, status, status === 401 ? 'Unauthorized' : status === 502 ? 'Bad Gateway' : 'Bad Request', `The sign-in could not be completed: ${detail}.`, retry, [clearFlow])
    }
    const userIdOf = (provider as { userIdOf?: (c: typeof tokens.claims) => string }).userIdOf
    const userId = userIdOf ? userIdOf.call(provider, tokens.claims) : tokens.claims.sub
    const { session, recordVersion } = await this.#deps.sessions.create({
      userId,
      idpId: login.idpId,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken,
      idToken: tokens.idToken,
      tokenExpiresAt: tokenExpiry(tokens),
      claims: tokens.claims,
      idpSubject: tokens.claims.sub,
      ...(typeof tokens.claims['sid'] === 'string' ? { idpSessionId: tokens.claims['sid'] } : {}),
    })
    await this.#deps.sessions.putUser(userFromClaims(userId, tokens.claims))
    this.#deps.logger.info({ requestId: req.requestId, userId, sessionId: session.id, idpId: login.idpId }, 'signed in')
    const handle = handleFor(session, settings.authenticateHost, [settings.authenticateHost], recordVersion)
    const next = signInHref ?? new URL('/.pomerium/', settings.authenticateUrl).href
    return redirect(next, [clearFlow, setCookie(settings.cookieName, signSessionHandle(handle, this.#deps.secrets.sharedSecret), settings.cookie)])
  }

  // --- sign-out ------------------------------------------------------------------------

  async #signOut(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const url = this.#canonicalUrl(req, settings)
    const signed = verifySignedUrl(url, this.#deps.secrets.sharedSecret) === undefined
    const csrfName = `${settings.cookieName}_csrf`
    const csrfCookie = readCookie(req.headers['cookie'], csrfName)
    if (!signed) {
      const sessionId = this.#cookieSessionId(req, settings)
      if (req.method === 'POST' && checkSignOutToken(this.#deps.secrets.cookieSecret, formFields(req).get('csrf'), csrfCookie, sessionId)) {
        return this.#endSession(req, settings, new URLSearchParams())
      }
      if (req.method === 'POST') return this.#error(req, 400, 'Bad Request', 'Invalid CSRF token: open the sign-out page again and press the button there.')
      // Unsigned GET: anyone can link here, so ask first (Pomerium docs: Sign-out).
      const token = csrfCookie ?? randomBytes(32).toString('base64url')
      const action = signUrl(new URL('/.pomerium/sign_out', settings.authenticateUrl), this.#deps.secrets.sharedSecret).href
      const rendered = signOutConfirmPage(action, this.#signOutToken(token, sessionId), settings.formActions)
      const cookies = csrfCookie === undefined ? [setCookie(csrfName, token, { domain: undefined, httpOnly: true, sameSite: 'lax', maxAgeS: CSRF_MAX_AGE_S })] : undefined
      return page(200, rendered, cookies)
    }
    return this.#endSession(req, settings, url.searchParams)
  }

  /**
   * `/.pomerium/signed_out`. The provider's logout prompt returns here whatever the person
   * answered, so the page cannot claim the provider's session ended; it offers the default
   * provider's own sign-out (no id_token_hint: the session that had it is gone) instead.
   */
  async #signedOut(settings: AuthSettings): Promise<EndpointResponse> {
    const idp = settings.defaultProvider
    const provider = idp ? this.#deps.providers.get(settings, idp.id) : undefined
    let providerSignOutUrl: string | undefined
    try {
      providerSignOutUrl = (await provider?.endSessionUrl({ postLogoutRedirectUri: new URL('/.pomerium/signed_out', settings.authenticateUrl).href }))?.href
    } catch (err) {
      this.#deps.logger.warn({ err: isIdentityProviderError(err) ? err.message : String(err) }, 'provider logout URL unavailable for the signed-out page')
    }
    return page(200, signedOutPage({ providerSignOutUrl }))
  }

  /** The sign-out token names the session it ends (sign-out-csrf.ts): a planted CSRF cookie is not enough. */
  #signOutToken(csrfCookie: string, sessionId: string | undefined): string {
    return signOutToken(this.#deps.secrets.cookieSecret, csrfCookie, sessionId)
  }

  /** The id of the session the authenticate cookie names (its handle's `jti`), if it verifies. */
  #cookieSessionId(req: EndpointRequest, settings: AuthSettings): string | undefined {
    const cookie = readCookie(req.headers['cookie'], settings.cookieName)
    return cookie !== undefined ? verifySessionHandle(cookie, this.#deps.secrets.sharedSecret)?.jti : undefined
  }

  /** Ends the sessions this request names (signed parameters only), then leaves through the provider's logout. */
  async #endSession(req: EndpointRequest, settings: AuthSettings, signedParams: URLSearchParams): Promise<EndpointResponse> {
    const { sessions, secrets, logger } = this.#deps
    const ids = new Set<string>()
    const cookie = readCookie(req.headers['cookie'], settings.cookieName)
    const handle = cookie !== undefined ? verifySessionHandle(cookie, secrets.sharedSecret) : undefined
    if (handle) ids.add(handle.jti)
    const fromRoute = signedParams.get(PARAM_SESSION_ID)
    if (fromRoute) ids.add(fromRoute)
    let ended: Session | undefined
    for (const id of ids) {
      const session = await sessions.get(id)
      if (!session) continue
      ended ??= session
      await sessions.delete(id)
      const provider = this.#deps.providers.get(settings, session.idpId)
      for (const [token, hint] of [
        [session.refreshToken, 'refresh_token'],
        [session.accessToken, 'access_token'],
      ] as const) {
        if (token === undefined || !provider) continue
        await provider.revoke(token, hint).catch((err: unknown) => logger.warn({ err: isIdentityProviderError(err) ? err.message : String(err), sessionId: id }, 'token revocation failed'))
      }
      logger.info({ requestId: req.requestId, sessionId: id, userId: session.userId }, 'signed out')
    }
    const requested = signedParams.get(PARAM_REDIRECT_URI)
    const target =
      (requested !== null ? allowedRedirect(requested, settings.redirects)?.href : undefined) ??
      settings.signoutRedirectUrl ??
      new URL('/.pomerium/signed_out', settings.authenticateUrl).href
    const clear = clearCookie(settings.cookieName, settings.cookie)
    const provider = ended ? this.#deps.providers.get(settings, ended.idpId) : undefined
    if (provider) {
      try {
        const end = await provider.endSessionUrl({ ...(ended?.idToken !== undefined ? { idTokenHint: ended.idToken } : {}), postLogoutRedirectUri: target })
        if (end) return redirect(end.href, [clear])
      } catch (err) {
        logger.warn({ err: isIdentityProviderError(err) ? err.message : String(err) }, 'provider logout URL unavailable; signed out locally')
      }
    }
    return redirect(target, [clear])
  }

  // --- user pages ----------------------------------------------------------------------

  async #authenticateSession(req: EndpointRequest, settings: AuthSettings): Promise<Session | undefined> {
    const cookie = readCookie(req.headers['cookie'], settings.cookieName)
    const handle = cookie !== undefined ? verifySessionHandle(cookie, this.#deps.secrets.sharedSecret) : undefined
    if (!handle) return undefined
    return this.#currentSession(req, settings, handle.idp_id)
  }

  async #userPage(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const session = await this.#authenticateSession(req, settings)
    if (!session) {
      const provider = settings.defaultProvider
      if (!provider) return this.#error(req, 404, 'Not Found', 'Sign-in is not configured (idp_provider is not set).')
      const here = new URL('/.pomerium/', settings.authenticateUrl).href
      const url = new URL('/.pomerium/sign_in', settings.authenticateUrl)
      url.searchParams.set(PARAM_REDIRECT_URI, here)
      url.searchParams.set(PARAM_IDP_ID, provider.id)
      return redirect(signUrl(url, this.#deps.secrets.sharedSecret).href)
    }
    const csrfName = `${settings.cookieName}_csrf`
    const csrf = readCookie(req.headers['cookie'], csrfName) ?? randomBytes(32).toString('base64url')
    const rendered = userPage({ ...userPageData(session, signOutUrl(settings, this.#deps.secrets.sharedSecret, {}).href, this.#signOutToken(csrf, this.#cookieSessionId(req, settings))), formActions: settings.formActions })
    return page(200, rendered, [setCookie(csrfName, csrf, { domain: undefined, httpOnly: true, sameSite: 'lax', maxAgeS: CSRF_MAX_AGE_S })])
  }

  async #userJson(req: EndpointRequest, settings: AuthSettings): Promise<EndpointResponse> {
    const session = await this.#authenticateSession(req, settings)
    if (!session) return json(401, { error: 'sign-in required', request_id: req.requestId })
    return json(200, userJson(session))
  }

  // --- helpers -------------------------------------------------------------------------

  /** The request URL as signed: the configured authenticate origin, whatever Host or scheme arrived. */
  #canonicalUrl(req: EndpointRequest, settings: AuthSettings): URL {
    return new URL(`${settings.authenticateUrl.origin}${req.path}${req.query}`)
  }

  /** A retry link: the original app URL inside a sign-in link, which starts a fresh sign-in. */
  #retry(signInHref: string): string | undefined {
    try {
      const target = new URL(signInHref).searchParams.get(PARAM_REDIRECT_URI)
      return target !== null && /^https?:\/\//i.test(target) ? allowedRedirect(target, this.#deps.settings().redirects)?.href : undefined
    } catch {
      return undefined
    }
  }

  #methodNotAllowed(req: EndpointRequest): EndpointResponse {
    return this.#error(req, 405, 'Method Not Allowed', `${req.method} is not allowed here.`)
  }

  #error(req: EndpointRequest, status: number, title: string, message: string, retryUrl?: string, cookies?: readonly string[]): EndpointResponse {
    if (prefersJson(req.headers['accept'])) return { ...json(status, { error: message, request_id: req.requestId }), ...(cookies ? { cookies } : {}) }
    return page(status, errorPage({ status, title, message, requestId: req.requestId, ...(retryUrl !== undefined ? { retryUrl } : {}) }), cookies)
  }
}

function parseLoginSecrets(text: string): LoginSecrets | undefined {
  try {
    const v = JSON.parse(text) as Partial<LoginSecrets>
    if (typeof v.nonce !== 'string' || typeof v.idpId !== 'string') return undefined
    if (v.verifier !== undefined && typeof v.verifier !== 'string') return undefined
    return { verifier: v.verifier, nonce: v.nonce, idpId: v.idpId }
  } catch {
    return undefined
  }
}

/** The user page's data: identity and claims only, never tokens. */
export function userPageData(session: Session, signOutAction: string, csrfToken: string): Parameters<typeof userPage>[0] {
  const claims = session.claims
  return {
    name: typeof claims['name'] === 'string' ? claims['name'] : '',
    email: typeof claims['email'] === 'string' ? claims['email'] : '',
    userId: session.userId,
    groups: groupsOf(claims),
    claims,
    issuedAt: new Date(session.issuedAt),
    expiresAt: new Date(session.expiresAt),
    signOutAction,
    csrfToken,
  }
}

/**
 * A programmatic sign-in whose callback is Portcullis' own listener address (an IP, or
 * `localhost`): a tunnel client that dialled Portcullis by address ran its login there
 * (docs/tunnels.md). The proxy only puts such a callback into the signed sign-in URL when the
 * login request reached that very address, so the signature (verified above) vouches for it.
 */
function listenerAddressCallback(callback: string, programmatic: boolean): URL | undefined {
  if (!programmatic) return undefined
  let url: URL
  try {
    url = new URL(callback)
  } catch {
    return undefined
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username !== '' || url.password !== '') return undefined
  const host = url.hostname.toLowerCase()
  const address = isIP(host.replace(/^\[|\]$/g, '')) !== 0
  if (!address && host !== 'localhost') return undefined
  // Plain http only for loopback, as for every other redirect.
  if (url.protocol === 'http:' && !isBrowserLoopbackHost(host)) return undefined
  return url
}

/** `/.pomerium/user` (Pomerium docs: On every route host): the identity claims of the JWT assertion, without iss/aud/exp/iat/jti. */
export function userJson(session: Session): Record<string, unknown> {
  const claims = session.claims
  return {
    sub: session.userId,
    user: session.userId,
    email: typeof claims['email'] === 'string' ? claims['email'] : '',
    groups: groupsOf(claims),
    sid: session.id,
    name: typeof claims['name'] === 'string' ? claims['name'] : '',
  }
}
