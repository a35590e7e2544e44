/**
 * The built-in identity provider's interaction routes, in place of oidc-provider's development
 * ones: `GET /interaction/:uid` shows the sign-in page (or grants consent, which is automatic:
 * every client is configured by the operator, so first-party), `POST .../login` checks email and
 * password, `POST .../totp` checks the one-time code of users who have a TOTP secret, and
 * `GET .../abort` cancels (the application gets `access_denied`).
 *
 * A failed sign-in says only "wrong email or password", whatever failed (unknown email, wrong
 * password, disabled account), and an unknown email costs the same argon2id work as a known one.
 * Failures are logged with the reason, never with the password. While the rate limiter holds an
 * email or an address, the password is not checked at all; an attempt counts against the limits
 * from the moment it is let through, so concurrent attempts cannot all pass while the first
 * ones are still being checked.
 *
 * The interaction itself is bound to the browser by oidc-provider's interaction cookie
 * (SameSite=Lax, so a cross-site form cannot post into someone else's sign-in).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

import { errors } from 'oidc-provider'
import type Provider from 'oidc-provider'

import type { Logger } from '../shared/log.js'
import { idpErrorPage, loginPage, totpPage } from './pages.js'
import type { RenderedPage } from './pages.js'
import { MAX_PASSWORD_LENGTH, PasswordHasherBusyError, verifyDummy, verifyPassword } from './password.js'
import type { LoginRateLimiter } from './rate-limit.js'
import type { TotpVerifier } from './totp.js'
import { canonicalEmail } from './users.js'
import type { BuiltinUser, UserDirectory } from './users.js'

interface InteractionDeps {
  readonly provider: Provider
  readonly users: () => UserDirectory
  readonly limiter: LoginRateLimiter
  readonly totp: TotpVerifier
  readonly logger: Logger
  /** Origins the sign-in forms may end up at after redirects (CSP `form-action`). */
  readonly formActions: readonly string[]
  readonly clientIp: (req: IncomingMessage) => string
  /** A readable name for a client id, shown as "to continue to ...". */
  readonly clientLabel: (clientId: string) => string | undefined
  readonly now: () => number
}

/** How long a correct password waits for its one-time code. */
const TOTP_PENDING_MS = 5 * 60_000
const MAX_PENDING = 10_000
const MAX_BODY_BYTES = 16 * 1024
const WRONG_CREDENTIALS = 'Wrong email or password.'
const WRONG_CODE = 'Wrong or already used code.'

interface PendingTotp {
  readonly sub: string
  readonly email: string
  readonly expiresAt: number
}

type Handler = (req: IncomingMessage, res: ServerResponse, pathname: string) => Promise<void>

export function createInteractionHandler(deps: InteractionDeps): Handler {
  const { provider, logger } = deps
  /** Interactions whose password was right and whose code is awaited, by interaction uid. */
  const pending = new Map<string, PendingTotp>()

  function remember(uid: string, entry: PendingTotp): void {
    const now = deps.now()
    for (const [key, value] of pending) if (value.expiresAt <= now) pending.delete(key)
    if (pending.size >= MAX_PENDING) {
      const oldest = pending.keys().next()
      if (oldest.done !== true) pending.delete(oldest.value)
    }
    pending.set(uid, entry)
  }

  function send(res: ServerResponse, status: number, page: RenderedPage, extra: Record<string, string> = {}): void {
    res.writeHead(status, { ...page.headers, ...extra })
    res.end(page.html)
  }

  function redirect(res: ServerResponse, location: string): void {
    res.writeHead(303, { location, 'cache-control': 'no-store' })
    res.end()
  }

  function limitedMessage(retryAfterMs: number): string {
    const minutes = Math.max(1, Math.ceil(retryAfterMs / 60_000))
    return `Too many attempts, try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`
  }

  async function finishLogin(
    req: IncomingMessage,
    res: ServerResponse,
    uid: string,
    clientId: string,
    user: BuiltinUser,
    amr: string[],
  ): Promise<void> {
    deps.limiter.recordSuccess(user.email)
    pending.delete(uid)
    logger.info(
      { event: 'builtin_idp_login', sub: user.sub, email: user.email, client_id: clientId, ip: deps.clientIp(req), amr },
      'built-in IdP: signed in',
    )
    await provider.interactionFinished(req, res, { login: { accountId: user.sub, amr } }, { mergeWithLastSubmission: false })
  }

  return async function handle(req, res, pathname) {
    const match = /^\/interaction\/([A-Za-z0-9_-]{1,128})(?:\/(login|totp|abort))?$/.exec(pathname)
    if (!match) return send(res, 404, idpErrorPage(404, 'Not found', 'There is nothing at this address.'))
    const [, uid = '', action] = match

    let details: Awaited<ReturnType<Provider['interactionDetails']>>
    try {
      details = await provider.interactionDetails(req, res)
    } catch (err) {
      if (err instanceof errors.SessionNotFound) {
        return send(res, 400, idpErrorPage(400, 'Sign-in expired', 'This sign-in has expired or was started in another browser. Go back to the application and sign in again.'))
      }
      throw err
    }
    if (details.uid !== uid) {
      return send(res, 400, idpErrorPage(400, 'Sign-in expired', 'This sign-in link does not belong to the sign-in in progress. Go back to the application and sign in again.'))
    }
    const clientId = typeof details.params.client_id === 'string' ? details.params.client_id : ''
    const base = `/interaction/${encodeURIComponent(uid)}`
    const cancelUrl = `${base}/abort`
    const clientLabel = deps.clientLabel(clientId)

    if (action === 'abort') {
      pending.delete(uid)
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'the user cancelled the sign-in' },
        { mergeWithLastSubmission: false },
      )
      return
    }

    if (details.prompt.name === 'consent') {
      // Consent is automatic: the operator configured every client. Grant exactly what is missing
      // (this is also where `offline_access` enters the grant, so refresh tokens are issued).
      if (action !== undefined) return redirect(res, base)
      const accountId = details.session?.accountId
      if (accountId === undefined) throw new Error('consent prompt without a signed-in account')
      const grant = details.grantId !== undefined ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId })
      if (!grant) throw new Error('the grant of this interaction no longer exists')
      const missing = details.prompt.details as {
        missingOIDCScope?: string[]
        missingOIDCClaims?: string[]
        missingResourceScopes?: Record<string, string[]>
      }
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '))
      }
      const grantId = await grant.save()
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
      return
    }

    if (details.prompt.name !== 'login') {
      throw new Error(`unexpected interaction prompt ${JSON.stringify(details.prompt.name)}`)
    }

    const hint = typeof details.params.login_hint === 'string' ? details.params.login_hint.slice(0, 254) : ''
    const ip = deps.clientIp(req)
    const showLogin = (status: number, email: string, error?: string, extra?: Record<string, string>): void =>
      send(
        res,
        status,
        loginPage(
          { action: `${base}/login`, email, cancelUrl, ...(clientLabel !== undefined ? { clientLabel } : {}), ...(error !== undefined ? { error } : {}) },
          deps.formActions,
        ),
        extra,
      )
    const showTotp = (status: number, email: string, error?: string, extra?: Record<string, string>): void =>
      send(res, status, totpPage({ action: `${base}/totp`, email, cancelUrl, ...(error !== undefined ? { error } : {}) }, deps.formActions), extra)

    if (req.method !== 'POST') {
      const waiting = pending.get(uid)
      if (waiting && waiting.expiresAt > deps.now()) return showTotp(200, waiting.email)
      if (action !== undefined) return redirect(res, base)
      return showLogin(200, hint)
    }

    const form = await readForm(req)
    if (!form) return showLogin(400, hint, 'The form could not be read. Please try again.')

    if (action === 'login') {
      const email = (form.get('email') ?? '').trim().slice(0, 254)
      const password = form.get('password') ?? ''
      const fail = (reason: string, status = 401): void => {
        logger.warn({ event: 'builtin_idp_login_failed', email: canonicalEmail(email), ip, client_id: clientId, reason }, 'built-in IdP: sign-in failed')
        showLogin(status, email, WRONG_CREDENTIALS)
      }
      // Counted before the (asynchronous) password check, so a concurrent burst is limited too.
      const attempt = deps.limiter.reserve(email, ip)
      if (attempt.limited) {
        logger.warn(
          { event: 'builtin_idp_login_failed', email: canonicalEmail(email), ip, client_id: clientId, reason: 'rate_limited', scope: attempt.scope },
          'built-in IdP: sign-in refused, too many failed attempts',
        )
        return showLogin(429, email, limitedMessage(attempt.retryAfterMs), { 'retry-after': String(Math.ceil(attempt.retryAfterMs / 1000)) })
      }
      const directory = deps.users()
      const user = email === '' ? undefined : directory.byEmail(email)
      let ok: boolean
      try {
        if (!user || password.length > MAX_PASSWORD_LENGTH) ok = await verifyDummy(password, directory.typicalHashParams)
        else ok = await verifyPassword(password, user.passwordHash)
      } catch (err) {
        if (!(err instanceof PasswordHasherBusyError)) throw err
        attempt.release() // nothing was checked
        logger.warn({ event: 'builtin_idp_busy', ip }, 'built-in IdP: too many sign-ins at once')
        return showLogin(503, email, 'Too many sign-ins at once. Please try again in a moment.', { 'retry-after': '5' })
      }
      if (!user || !ok || user.disabled) return fail(!user ? 'unknown_user' : !ok ? 'wrong_password' : 'disabled')
      attempt.release()
      if (user.totpSecret !== undefined) {
        remember(uid, { sub: user.sub, email: user.email, expiresAt: deps.now() + TOTP_PENDING_MS })
        return showTotp(200, user.email)
      }
      return finishLogin(req, res, uid, clientId, user, ['pwd'])
    }

    if (action === 'totp') {
      const waiting = pending.get(uid)
      if (!waiting || waiting.expiresAt <= deps.now()) {
        pending.delete(uid)
        return showLogin(401, hint, 'Please sign in again.')
      }
      const user = deps.users().bySub(waiting.sub)
      const fail = (reason: string, message: string, status = 401): void => {
        logger.warn({ event: 'builtin_idp_login_failed', email: canonicalEmail(waiting.email), ip, client_id: clientId, reason }, 'built-in IdP: sign-in failed at the one-time code')
        showTotp(status, waiting.email, message)
      }
      const attempt = deps.limiter.reserve(waiting.email, ip)
      if (attempt.limited) {
        pending.delete(uid)
        logger.warn(
          { event: 'builtin_idp_login_failed', email: canonicalEmail(waiting.email), ip, client_id: clientId, reason: 'rate_limited', scope: attempt.scope },
          'built-in IdP: sign-in refused, too many failed attempts',
        )
        return showLogin(429, waiting.email, limitedMessage(attempt.retryAfterMs), { 'retry-after': String(Math.ceil(attempt.retryAfterMs / 1000)) })
      }
      if (!user || user.disabled || user.totpSecret === undefined) {
        // The users file changed under this sign-in.
        pending.delete(uid)
        logger.warn({ event: 'builtin_idp_login_failed', email: canonicalEmail(waiting.email), ip, client_id: clientId, reason: 'user_changed' }, 'built-in IdP: sign-in failed')
        return showLogin(401, waiting.email, WRONG_CREDENTIALS)
      }
      const result = deps.totp.verify(user.sub, user.totpSecret, form.get('code') ?? '')
      if (!result.ok) return fail(`totp_${result.reason}`, WRONG_CODE)
      attempt.release()
      return finishLogin(req, res, uid, clientId, user, ['pwd', 'otp', 'mfa'])
    }

    return redirect(res, base)
  }
}

/** The urlencoded body of a sign-in form, or undefined when it is not one or is too large. */
async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') {
    req.resume()
    return undefined
  }
  // Read to the end even when too large: leaving the loop early would destroy the socket before
  // the answer is written. The server's request timeout bounds how long that can take.
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size <= MAX_BODY_BYTES) chunks.push(chunk as Buffer)
  }
  return size > MAX_BODY_BYTES ? undefined : new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}
