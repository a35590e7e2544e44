/**
 * Portcullis' built-in OpenID Connect provider (a Portcullis extension: Pomerium always needs an
 * external one). It is `oidc-provider`, the certified implementation, configured for a small set
 * of first-party clients, with users from a YAML file (`users.ts`), argon2id passwords, optional
 * TOTP, and rate-limited sign-in pages of our own (`interactions.ts`). Portcullis' sign-in code
 * talks to it over HTTP like to any other provider, so it is a complete provider: discovery,
 * authorization code flow with PKCE (S256, required), refresh tokens for `offline_access`,
 * UserInfo, revocation, RP-initiated logout and back-channel logout.
 *
 * Everything secret derives from one 32-byte secret (`keys.ts`), so a restart keeps the JWKS and
 * the cookie key. Sessions and tokens live in memory (`adapter.ts`) and do not survive a restart.
 */
import { once } from 'node:events'
import { unwatchFile, watchFile } from 'node:fs'
import type { Stats } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { isIP } from 'node:net'
import type { AddressInfo } from 'node:net'

import Provider from 'oidc-provider'
import type { ClientMetadata, Configuration, KoaContextWithOIDC } from 'oidc-provider'

import { guardedRequestListener } from '../shared/boundary.js'
import type { HandlerOutcome, InternalErrorAnswer } from '../shared/boundary.js'
import { isLoopbackHost } from '../shared/loopback.js'
import type { Logger } from '../shared/log.js'
import { createMemoryStore } from './adapter.js'
import type { StoreLimits } from './adapter.js'
import { createInteractionHandler } from './interactions.js'
import { cookieKey, signingJwk } from './keys.js'
import { idpErrorPage, logoutConfirmPage, signedOutPage } from './pages.js'
import type { RenderedPage } from './pages.js'
import { LoginRateLimiter, RequestRateLimiter } from './rate-limit.js'
import type { LimitRule } from './rate-limit.js'
import { TotpVerifier } from './totp.js'
import { UserStore, UsersFileError } from './users.js'

interface BuiltinIdpClient {
  clientId: string
  clientSecret: string
  /** Exact callback URLs, e.g. `https://authenticate.example.com/oauth2/callback`. */
  redirectUris: string[]
  postLogoutRedirectUris: string[]
  /** Receives a signed logout token when the user signs out at the provider. */
  backchannelLogoutUri?: string
  /** Default `client_secret_basic` (what Portcullis' OIDC client uses). */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post'
  /** Shown on the sign-in page as "to continue to NAME"; default: nothing. */
  name?: string
}

export interface BuiltinIdpOptions {
  /**
   * Where a browser may end up after the sign-in form's redirects, besides the clients' redirect
   * origins (browsers check CSP `form-action` on every hop): the route hosts of the relying party,
   * as CSP host sources such as `app.example.com:*` or `*.example.com:*`.
   */
  formActionHosts?: readonly string[]
  /**
   * The provider's external URL and issuer identifier (`https://idp.example.com`), no path. Plain
   * `http` only on loopback (`127.0.0.0/8`, `[::1]`, `localhost`). Default: `http(s)://host:port`
   * of the listener, which needs a concrete `host`.
   */
  issuer?: string
  /** Address to listen on; default `127.0.0.1`. */
  host?: string
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number
  /** The users YAML file (see `users.ts`). */
  usersFile: string
  clients: BuiltinIdpClient[]
  /** 32 bytes; signing key and cookie key derive from it, so keep it stable across restarts. */
  secret: Buffer
  logger: Logger
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer }
  /**
   * The provider sits behind a TLS-terminating reverse proxy (e.g. a Portcullis route): trust
   * `X-Forwarded-Proto`/`-Host` and take the client address for rate limits from the last
   * `X-Forwarded-For` entry. Only safe when nothing but that proxy can reach the listener.
   * Required for an `https` issuer served without `tls`.
   */
  trustProxy?: boolean
  /** Default 3600. */
  accessTokenTtlSeconds?: number
  /** Default 3600. */
  idTokenTtlSeconds?: number
  /** Default 14 days. */
  refreshTokenTtlSeconds?: number
  /** How long a sign-in at the provider lasts (single sign-on between clients); default 24 hours. */
  sessionTtlSeconds?: number
  /**
   * Failed sign-ins allowed, defaults 5 per email and 20 per address, each per 15 minutes; and
   * `requestsPerIp`: requests to the authorization and end-session endpoints per address (each
   * stores an interaction or a session for whoever sends it), default 60 a minute.
   */
  rateLimit?: { perUser?: LimitRule; perIp?: LimitRule; requestsPerIp?: LimitRule }
  /** Entries kept per model kind in memory (see `adapter.ts`); defaults `DEFAULT_STORE_LIMITS`. */
  storeLimits?: StoreLimits
  /** Reload the users file when it changes (polled every 2 s); default true. */
  watchUsersFile?: boolean
  /** Clock for rate limits and TOTP, epoch milliseconds (oidc-provider keeps its own). */
  now?: () => number
  /**
   * FOR TESTS ONLY, never set from the configuration: called with each request's path before it
   * is routed; it may throw or return a promise that rejects, to show the error boundary at work.
   */
  testFault?: (path: string) => Promise<never> | undefined
}

/** The provider's `500`: its own error page, with the request id to find the log line by. */
const idpInternalError: InternalErrorAnswer = (req, res, requestId) => {
  const page = idpErrorPage(500, 'Something went wrong', `The sign-in could not be completed. Go back to the application and try again. (Request id: ${requestId})`)
  res.writeHead(500, { ...page.headers, 'x-request-id': requestId })
  res.end(req.method === 'HEAD' ? undefined : page.html)
}

export interface BuiltinIdp {
  /** The issuer identifier, without a trailing slash. */
  readonly issuer: string
  /** The port actually listened on. */
  readonly port: number
  /** Stops listening, cuts open connections and forgets every session and token. */
  close(): Promise<void>
  /** Reads the users file again; on an error logs it and keeps the previous users. */
  reloadUsers(): void
}

/** How long a sign-in may take at the provider, from the authorization request to the last form. */
const INTERACTION_TTL_SECONDS = 10 * 60

/**
 * The authorization endpoint (`/auth`, which stores an interaction) and the end-session endpoint
 * (`/session/end`, which stores a session), matched as oidc-provider's router matches them:
 * case-insensitive, one optional trailing slash. `/auth/<uid>` resumes a sign-in already counted.
 */
const STORES_FOR_ANYONE = /^\/(?:auth|session\/end)\/?$/i

const COOKIE_NAMES = {
  session: 'portcullis_idp_session',
  interaction: 'portcullis_idp_interaction',
  resume: 'portcullis_idp_resume',
}

/** @throws {TypeError} for invalid options; {@link UsersFileError} when the users file does not load */
export async function startBuiltinIdp(options: BuiltinIdpOptions): Promise<BuiltinIdp> {
  const logger = options.logger.child({ component: 'builtin-idp' })
  const now = options.now ?? Date.now
  if (!Buffer.isBuffer(options.secret) || options.secret.length !== 32) {
    throw new TypeError('built-in IdP: secret must be 32 bytes')
  }
  const clients = checkClients(options.clients)
  const host = options.host ?? '127.0.0.1'
  const ttl = {
    accessToken: positive(options.accessTokenTtlSeconds, 3600, 'accessTokenTtlSeconds'),
    idToken: positive(options.idTokenTtlSeconds, 3600, 'idTokenTtlSeconds'),
    refreshToken: positive(options.refreshTokenTtlSeconds, 14 * 86_400, 'refreshTokenTtlSeconds'),
    session: positive(options.sessionTtlSeconds, 86_400, 'sessionTtlSeconds'),
  }
  if (options.issuer !== undefined) checkIssuer(options.issuer, options)
  else if (host === '0.0.0.0' || host === '::' || host === '') throw new TypeError('built-in IdP: issuer is required when listening on a wildcard address')

  const users = new UserStore(options.usersFile)
  const declaredClaims = new Set(users.current.claimNames)
  logger.info({ users: users.current.users.length, file: options.usersFile }, 'built-in IdP: users loaded')

  // Listen first: without an explicit issuer it names the port.
  const route: { handler?: (req: IncomingMessage, res: ServerResponse) => HandlerOutcome } = {}
  // Every request runs inside the boundary (src/shared/boundary.ts): what escapes a handler costs
  // that request the error page with a request id, never the process.
  const listener = guardedRequestListener(
    (req, res) => {
      if (route.handler) return route.handler(req, res)
      res.writeHead(503).end()
    },
    { listener: 'built-in IdP', logger, answer: idpInternalError },
  )
  const server: Server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, listener) : createHttpServer(listener)
  server.listen(options.port ?? 0, host)
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))])
  const port = (server.address() as AddressInfo).port
  const issuer = (options.issuer ?? `${options.tls ? 'https' : 'http'}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`).replace(/\/$/, '')
  try {
    checkIssuer(issuer, options)
  } catch (err) {
    server.close()
    throw err
  }
  const secureCookies = !isLoopbackHttp(new URL(issuer))

  const formActions = [
    ...new Set([
      ...clients.flatMap((c) => [...c.redirectUris, ...c.postLogoutRedirectUris]).map((u) => new URL(u).origin),
      ...(options.formActionHosts ?? []),
    ]),
  ]
  const clientNames = new Map(clients.map((c) => [c.clientId, c.name]))
  const store = createMemoryStore(options.storeLimits ? { limits: options.storeLimits } : {})
  const { requestsPerIp, ...loginLimits } = options.rateLimit ?? {}
  const limiter = new LoginRateLimiter({ ...loginLimits, now })
  const requestLimiter = new RequestRateLimiter({ ...(requestsPerIp ? { perIp: requestsPerIp } : {}), now })
  const totp = new TotpVerifier({ now })

  // Lax rather than oidc-provider's default None for the session cookie: None needs Secure, which
  // loopback http cannot have, and every request that must carry it is a top-level navigation or
  // a same-site form. Paths stay oidc-provider's (each interaction cookie is scoped to its own
  // interaction, so two sign-ins in two tabs do not overwrite each other).
  const cookieOptions = { signed: true, httpOnly: true, sameSite: 'lax' as const, secure: secureCookies }
  const render = (ctx: KoaContextWithOIDC, page: RenderedPage): void => {
    for (const [name, value] of Object.entries(page.headers)) ctx.set(name, value)
    ctx.body = page.html
  }

  const configuration: Configuration = {
    adapter: store.factory,
    jwks: { keys: [signingJwk(options.secret)] },
    cookies: { keys: [cookieKey(options.secret)], names: COOKIE_NAMES, long: cookieOptions, short: cookieOptions },
    clients: clients.map(clientMetadata),
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    enabledJWA: { idTokenSigningAlgValues: ['ES256'], userinfoSigningAlgValues: ['ES256'] },
    pkce: { required: () => true, methods: ['S256'] },
    allowOmittingSingleRegisteredRedirectUri: false,
    findAccount(_ctx, sub) {
      const user = users.current.bySub(sub)
      if (!user || user.disabled) return undefined
      return {
        accountId: sub,
        // Read at claim time, so a changed users file shows on the next refresh or UserInfo call.
        claims() {
          const current = users.current.bySub(sub) ?? user
          return {
            ...current.claims,
            sub,
            email: current.email,
            email_verified: true,
            name: current.name,
            groups: [...current.groups],
          }
        },
      }
    },
    claims: {
      // `amr` (pwd, or pwd otp mfa) lets applications tell a second factor was used.
      openid: ['sub', 'amr'],
      email: ['email', 'email_verified'],
      // Groups and extra claims ride on `profile` too: Portcullis asks for `openid profile email offline_access`.
      profile: ['name', 'groups', ...declaredClaims],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // ID tokens carry every claim the scopes release, as Pomerium expects of Google, Okta, Keycloak.
    conformIdTokenClaims: false,
    ttl: {
      AccessToken: ttl.accessToken,
      IdToken: ttl.idToken,
      RefreshToken: ttl.refreshToken,
      AuthorizationCode: 60,
      // Long enough to type a password and a one-time code (which waits 5 minutes), short because
      // anyone can create one: an abandoned sign-in holds memory no longer than this.
      Interaction: INTERACTION_TTL_SECONDS,
      Session: ttl.session,
      Grant: Math.max(ttl.refreshToken, ttl.session),
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      introspection: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource(ctx, form) {
          const clientId = ctx.oidc.client?.clientId
          render(ctx, logoutConfirmPage(form, clientId === undefined ? undefined : (clientNames.get(clientId) ?? clientId), formActions))
        },
        postLogoutSuccessSource(ctx) {
          // oidc-provider names the client here only after "Stay signed in" (see pages.ts).
          const clientId = ctx.oidc.client?.clientId
          render(ctx, signedOutPage(clientId === undefined ? undefined : { clientLabel: clientNames.get(clientId) ?? clientId }))
        },
      },
    },
    renderError(ctx, out) {
      const status = ctx.status >= 400 ? ctx.status : 400
      render(ctx, idpErrorPage(status, status >= 500 ? 'Something went wrong' : 'Sign-in failed', status >= 500 ? 'The identity provider hit an internal error. Please try again.' : `${out.error}: ${out.error_description ?? ''}`))
    },
  }

  const provider = new Provider(issuer, configuration)
  provider.proxy = options.trustProxy === true
  // Koa would print errors to stderr; they are logged below instead.
  provider.app.silent = true
  provider.on('server_error', (_ctx: KoaContextWithOIDC, err: Error) => logger.error({ err }, 'built-in IdP: server error'))
  provider.on('backchannel.error', (client: { clientId: string }, err: Error, accountId: string) =>
    logger.warn({ err, client_id: client.clientId, sub: accountId }, 'built-in IdP: back-channel logout failed'),
  )
  provider.on('end_session.success', (ctx: KoaContextWithOIDC) =>
    logger.info({ event: 'builtin_idp_logout', client_id: ctx.oidc.client?.clientId }, 'built-in IdP: signed out'),
  )
  for (const event of ['grant.error', 'authorization.error', 'userinfo.error', 'revocation.error', 'end_session.error'] as const) {
    provider.on(event, (_ctx: KoaContextWithOIDC, err: Error) => logger.info({ err: { name: err.name, message: err.message }, event }, 'built-in IdP: request refused'))
  }
  const providerCallback = provider.callback()

  const clientIp = (req: IncomingMessage): string => {
    if (options.trustProxy === true) {
      const forwarded = req.headers['x-forwarded-for']
      const last = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? '')).split(',').pop()?.trim()
      if (last) return last
    }
    return req.socket.remoteAddress ?? 'unknown'
  }

  const interactions = createInteractionHandler({
    provider,
    users: () => users.current,
    limiter,
    totp,
    logger,
    formActions,
    clientIp,
    clientLabel: (clientId) => clientNames.get(clientId),
    now,
  })

  let lastRefusalLog = -Infinity
  let refusedSinceLog = 0
  route.handler = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://placeholder')
    const fault = options.testFault?.(url.pathname)
    if (fault) return fault
    if (url.pathname.startsWith('/interaction/')) return interactions(req, res, url.pathname)
    if (STORES_FOR_ANYONE.test(url.pathname)) {
      const ip = clientIp(req)
      const decision = requestLimiter.take(ip)
      if (decision.limited) {
        // A flood is what this refuses: one log line per 10 seconds, with how many it stands for.
        refusedSinceLog++
        if (now() - lastRefusalLog >= 10_000) {
          logger.warn({ event: 'builtin_idp_requests_limited', ip, path: url.pathname, refused: refusedSinceLog }, 'built-in IdP: too many sign-in or sign-out requests from one address')
          lastRefusalLog = now()
          refusedSinceLog = 0
        }
        const seconds = Math.ceil(decision.retryAfterMs / 1000)
        const page = idpErrorPage(429, 'Too many requests', `Too many sign-ins or sign-outs were started from your network. Try again in ${seconds} second${seconds === 1 ? '' : 's'}.`)
        req.resume()
        res.writeHead(429, { ...page.headers, 'retry-after': String(seconds) })
        res.end(page.html)
        return
      }
    }
    if (req.method === 'GET' && url.pathname === '/auth') keepOfflineAccess(req, url)
    return providerCallback(req, res)
  }

  let reloading = false
  function reloadUsers(): void {
    if (reloading) return
    reloading = true
    try {
      const directory = users.reload()
      const undeclared = [...directory.claimNames].filter((name) => !declaredClaims.has(name))
      logger.info({ users: directory.users.length, file: options.usersFile }, 'built-in IdP: users reloaded')
      if (undeclared.length > 0) {
        logger.warn({ claims: undeclared }, 'built-in IdP: new claim names are released only after a restart')
      }
    } catch (err) {
      if (!(err instanceof UsersFileError)) throw err
      logger.error({ file: err.file, problems: err.problems }, 'built-in IdP: users file invalid, keeping the previous users')
    } finally {
      reloading = false
    }
  }

  const watching = options.watchUsersFile !== false
  const onChange = (current: Stats, previous: Stats): void => {
    if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size || current.ino !== previous.ino) reloadUsers()
  }
  if (watching) watchFile(options.usersFile, { persistent: false, interval: 2000 }, onChange)

  logger.info({ issuer, port, clients: clients.map((c) => c.clientId) }, 'built-in IdP: listening')
  return {
    issuer,
    port,
    reloadUsers,
    async close() {
      if (watching) unwatchFile(options.usersFile, onChange)
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
      store.close()
    },
  }
}

/**
 * OpenID Connect Core 11 lets a provider drop `offline_access` unless `prompt` contains `consent`,
 * and oidc-provider does. Consent here is automatic, so adding it to `prompt` only keeps the
 * refresh token the application asked for (as Okta, Auth0 and Keycloak behave). `prompt=none`
 * cannot be combined with anything and is left alone. A POSTed authorization request is not
 * rewritten: without `prompt=consent` it gets no refresh token, as the spec says.
 */
function keepOfflineAccess(req: IncomingMessage, url: URL): void {
  const scopes = (url.searchParams.get('scope') ?? '').split(' ')
  const prompts = (url.searchParams.get('prompt') ?? '').split(' ').filter(Boolean)
  if (!scopes.includes('offline_access') || prompts.includes('consent') || prompts.includes('none')) return
  url.searchParams.set('prompt', [...prompts, 'consent'].join(' '))
  req.url = `${url.pathname}${url.search}`
}

function clientMetadata(client: BuiltinIdpClient): ClientMetadata {
  const metadata: ClientMetadata = {
    client_id: client.clientId,
    client_secret: client.clientSecret,
    redirect_uris: [...client.redirectUris],
    post_logout_redirect_uris: [...client.postLogoutRedirectUris],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: client.tokenEndpointAuthMethod ?? 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }
  if (client.backchannelLogoutUri !== undefined) {
    metadata.backchannel_logout_uri = client.backchannelLogoutUri
    metadata.backchannel_logout_session_required = true
  }
  return metadata
}

function checkClients(clients: readonly BuiltinIdpClient[]): BuiltinIdpClient[] {
  if (clients.length === 0) throw new TypeError('built-in IdP: at least one client is required')
  const ids = new Set<string>()
  for (const [i, client] of clients.entries()) {
    const at = `built-in IdP: clients[${i}]`
    if (typeof client.clientId !== 'string' || client.clientId === '') throw new TypeError(`${at}: clientId is required`)
    if (ids.has(client.clientId)) throw new TypeError(`${at}: clientId ${JSON.stringify(client.clientId)} is used twice`)
    ids.add(client.clientId)
    if (typeof client.clientSecret !== 'string' || client.clientSecret.length < 16) {
      throw new TypeError(`${at}: clientSecret must be at least 16 characters`)
    }
    if (client.redirectUris.length === 0) throw new TypeError(`${at}: at least one redirect URI is required`)
    for (const uri of [...client.redirectUris, ...client.postLogoutRedirectUris, ...(client.backchannelLogoutUri !== undefined ? [client.backchannelLogoutUri] : [])]) {
      let parsed: URL
      try {
        parsed = new URL(uri)
      } catch {
        throw new TypeError(`${at}: ${JSON.stringify(uri)} is not an absolute URL`)
      }
      if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new TypeError(`${at}: ${JSON.stringify(uri)} must be http or https`)
      if (parsed.hash !== '') throw new TypeError(`${at}: ${JSON.stringify(uri)} must not have a fragment`)
    }
  }
  return [...clients]
}

function checkIssuer(issuer: string, options: BuiltinIdpOptions): void {
  let url: URL
  try {
    url = new URL(issuer)
  } catch {
    throw new TypeError(`built-in IdP: issuer ${JSON.stringify(issuer)} is not an absolute URL`)
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new TypeError(`built-in IdP: issuer ${JSON.stringify(issuer)} must be scheme, host and port only`)
  }
  if (url.protocol === 'http:') {
    if (!isLoopbackHttp(url)) throw new TypeError(`built-in IdP: issuer ${JSON.stringify(issuer)} must be https (plain http only on loopback)`)
  } else if (url.protocol === 'https:') {
    if (!options.tls && options.trustProxy !== true) {
      throw new TypeError(`built-in IdP: https issuer ${JSON.stringify(issuer)} needs tls, or trustProxy behind a TLS-terminating proxy`)
    }
  } else {
    throw new TypeError(`built-in IdP: issuer ${JSON.stringify(issuer)} must be http or https`)
  }
}

function isLoopbackHttp(url: URL): boolean {
  return url.protocol === 'http:' && isLoopbackHost(url.hostname)
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value <= 0) throw new TypeError(`built-in IdP: ${name} must be a positive whole number of seconds`)
  return value
}
