/**
 * The sign-in settings of one config generation, read once from the validated config:
 * where authenticate lives, the session cookie, the identity providers (the global one and any
 * per-route clients), and the hosts a browser may be sent back to. Everything the authenticate
 * service, the route endpoints and the authorizer need, in one immutable value rebuilt on reload.
 */
import type { Config, RouteConfig } from '../config/types.js'
import { providerIdFor } from '../config/providers.js'
import type { CookieOptions } from './cookies.js'
import { isBrowserLoopbackHost } from '../shared/loopback.js'
import type { RedirectPolicy } from './redirects.js'

/** One identity provider client: the global `idp_*` settings, or a route's own client id/secret. */
export interface IdpSettings {
  /** Stable id bound into session handles (`idp_id`). */
  readonly id: string
  readonly provider: string
  readonly url: string | undefined
  readonly clientId: string
  readonly clientSecret: string | undefined
  readonly scopes: readonly string[] | undefined
  readonly requestParams: Readonly<Record<string, string>> | undefined
}

export interface AuthSettings {
  /** False when no `idp_provider` is configured: only public routes can be served. */
  readonly enabled: boolean
  /** `authenticate_service_url`, as configured. */
  readonly authenticateUrl: URL
  /** Lower-case host name of the authenticate service (no port). */
  readonly authenticateHost: string
  /** `https://<authenticate>/oauth2/callback`: the redirect URI registered at the provider. */
  readonly callbackUrl: string
  readonly cookieName: string
  readonly cookie: CookieOptions
  readonly sessionLifetimeMs: number
  readonly signoutRedirectUrl: string | undefined
  /** `programmatic_redirect_domain_whitelist`, lower case. */
  readonly programmaticHosts: readonly string[]
  /** The global provider, when configured. */
  readonly defaultProvider: IdpSettings | undefined
  /** Every provider by id (global and per-route). */
  readonly providers: ReadonlyMap<string, IdpSettings>
  /** Where a browser may be sent after sign-in or sign-out (route hosts and authenticate). */
  readonly redirects: RedirectPolicy
  /** Origins a sign-out form's redirects pass through (for the pages' CSP `form-action`). */
  readonly formActions: readonly string[]
  /** `bearer_token_format` and `idp_access_token_allowed_audiences` of a route (route value, else global). */
  bearerFor(route: RouteConfig): { readonly format: string; readonly audiences: readonly string[] }
  /** The provider a route signs in with; undefined when sign-in is not configured. */
  providerFor(route: RouteConfig): IdpSettings | undefined
}

interface AuthSettingsOptions {
  /** The client secret to use with the built-in provider when `idp_client_secret` is unset. */
  readonly builtinClientSecret?: string
}

export function buildAuthSettings(config: Config, options: AuthSettingsOptions = {}): AuthSettings {
  const providerName = config.idp.provider
  const enabled = providerName !== undefined && providerName !== 'hosted'
  const authenticateUrl = new URL(config.authenticateServiceUrl)
  const authenticateHost = authenticateUrl.hostname.toLowerCase()
  const cookieName = config.cookie.name
  const lifetime = config.cookie.expireMs
  const cookie: CookieOptions = {
    domain: config.cookie.domain,
    httpOnly: config.cookie.httpOnly,
    sameSite: config.cookie.sameSite,
    maxAgeS: Math.floor(lifetime / 1000),
  }

  const providers = new Map<string, IdpSettings>()
  const builtin = providerName === 'builtin'
  const make = (clientId: string, clientSecret: string | undefined): IdpSettings => {
    const url = config.idp.providerUrl ?? (builtin ? `http://${config.builtinIdp.address}` : undefined)
    const settings: IdpSettings = {
      id: providerIdFor({ provider: providerName ?? 'oidc', url, clientId }),
      provider: providerName ?? 'oidc',
      url,
      clientId,
      clientSecret,
      scopes: config.idp.scopes,
      requestParams: config.idp.requestParams,
    }
    const existing = providers.get(settings.id)
    if (existing) return existing
    providers.set(settings.id, settings)
    return settings
  }
  const defaultProvider = enabled
    ? make(config.idp.clientId ?? (builtin ? 'portcullis' : ''), config.idp.clientSecret ?? (builtin ? options.builtinClientSecret : undefined))
    : undefined
  const byRoute = new Map<RouteConfig, IdpSettings>()
  if (enabled) {
    for (const route of config.routes) {
      if (route.idpClientId !== undefined) byRoute.set(route, make(route.idpClientId, route.idpClientSecret))
    }
  }

  const exactHosts = new Set<string>([authenticateHost])
  const wildcardSuffixes: string[] = []
  for (const route of config.routes) {
    const host = route.from.host
    if (host.startsWith('*.')) wildcardSuffixes.push(host.slice(1))
    else if (!host.includes('*')) exactHosts.add(host)
  }
  const programmaticHosts = config.programmaticRedirectDomainWhitelist.map((h) => h.toLowerCase())

  const formActions = new Set<string>([authenticateUrl.origin])
  for (const u of [...[...providers.values()].map((p) => p.url), config.signoutRedirectUrl]) {
    try {
      if (u !== undefined) formActions.add(new URL(u).origin)
    } catch {
      // not a URL: nothing to allow
    }
  }

  return {
    enabled,
    formActions: [...formActions],
    authenticateUrl,
    authenticateHost,
    callbackUrl: new URL('/oauth2/callback', authenticateUrl).href,
    cookieName,
    cookie,
    sessionLifetimeMs: lifetime,
    signoutRedirectUrl: config.signoutRedirectUrl,
    programmaticHosts,
    defaultProvider,
    providers,
    redirects: {
      hosts: exactHosts,
      wildcardSuffixes,
      allowLoopbackHttp: false,
    },
    providerFor: (route) => byRoute.get(route) ?? defaultProvider,
    bearerFor: (route) => ({ format: route.bearerTokenFormat, audiences: route.idpAccessTokenAllowedAudiences }),
  }
}

/** The redirect policy of programmatic sign-in: route hosts, plus the whitelist (`localhost` = any loopback, http allowed). */
export function programmaticRedirects(settings: AuthSettings): RedirectPolicy {
  const hosts = new Set(settings.redirects.hosts)
  for (const h of settings.programmaticHosts) if (h !== 'localhost') hosts.add(h)
  return { ...settings.redirects, hosts, allowLoopbackHttp: settings.programmaticHosts.includes('localhost') }
}

/**
 * The scheme to use in URLs that send a browser back to a route host: https, as Pomerium forces,
 * except for loopback hosts served over plain HTTP (the demo on `*.localhost`).
 */
export function browserScheme(host: string, listenerScheme: 'http' | 'https'): 'http' | 'https' {
  return listenerScheme === 'http' && isBrowserLoopbackHost(host) ? 'http' : 'https'
}
