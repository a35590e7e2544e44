/**
 * One factory from provider settings (`idp_provider`, `idp_provider_url`, `idp_client_id`,
 * `idp_client_secret`, `idp_scopes`, `idp_request_params`) to an {@link IdentityProvider}, for
 * every provider of reference section 8 plus `builtin` (Portcullis' own OpenID provider). The
 * per-provider differences are data in `defaults.ts`; this module applies them, and applies the
 * transport rule of `transport.ts` (HTTPS, plain HTTP only to loopback hosts) to every provider.
 */
import { createHash } from 'node:crypto'

import { effectiveScopes, isProviderName, providerDefaults, PROVIDER_NAMES } from './defaults.js'
import type { ProviderDefaults, ProviderName } from './defaults.js'
import { createGitHubProvider } from './github.js'
import { createOidcProvider, PROTOCOL_PARAMS } from './oidc.js'
import type { IdpFetch, OidcProviderOptions } from './oidc.js'
import type { IdentityProvider } from './provider.js'
import { guardedFetch, isLoopbackHost, providerUrlProblem } from './transport.js'

/** `idp_provider` values the factory accepts: the named providers and `builtin`. */
export type ProviderKind = ProviderName | 'builtin'

export interface ProviderSettings {
  /** The provider id (`idp_id`) sessions are bound to; usually {@link providerIdFor}. */
  id: string
  provider: ProviderKind
  /** `idp_provider_url`; required for oidc, okta, ping, auth0, cognito and builtin. */
  url?: string | undefined
  clientId: string
  /** Required for github and apple; optional (public client with PKCE) for OpenID providers. */
  clientSecret?: string | undefined
  /** `idp_scopes`; empty or unset means the provider's defaults. */
  scopes?: readonly string[] | undefined
  /** `idp_request_params`; replace the provider's defaults (merged over them for apple). */
  requestParams?: Readonly<Record<string, string>> | undefined
}

/** Settings as read from configuration, before the provider name is known to be valid. */
export type ProviderSettingsInput = Omit<ProviderSettings, 'id' | 'provider'> & { id?: string; provider: string }

export interface IdentityProviderFactoryOptions {
  /** Every request to the provider goes through this fetch (after the transport rule). */
  fetch?: IdpFetch
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
  /** Timeout per request to the provider, in seconds (default 30). */
  timeoutSeconds?: number
}

/** Providers whose `idp_client_secret` is required. */
const SECRET_REQUIRED: ReadonlySet<string> = new Set(['github', 'apple'])
const AZURE_MULTI_TENANT = new Set(['common', 'organizations', 'consumers'])

/**
 * A stable id for a provider client: base64url of SHA-256 over the provider name, the configured
 * URL and the client id, cut to 22 characters (132 bits). The secret is left out, so rotating it
 * keeps sessions; a different provider, URL or client id is a different `idp_id`.
 */
export function providerIdFor(settings: Pick<ProviderSettingsInput, 'provider' | 'url' | 'clientId'>): string {
  return createHash('sha256')
    .update(`${settings.provider}\n${settings.url ?? ''}\n${settings.clientId}`)
    .digest('base64url')
    .slice(0, 22)
}

/** The defaults that apply to a provider kind (`builtin` is generic OIDC). */
function defaultsFor(kind: string): ProviderDefaults | undefined {
  return providerDefaults(kind === 'builtin' ? 'oidc' : kind)
}

/**
 * Every problem with the settings, as messages naming the config keys (empty when usable):
 * unknown provider, missing client id, missing URL where there is no default, URLs that are
 * neither HTTPS nor HTTP (plain HTTP is accepted, as Pomerium does; config loading warns off
 * loopback), missing secret for github/apple, protocol parameters in
 * `idp_request_params`, and provider-specific URL shapes (GitHub root URL, Azure multi-tenant host).
 */
export function validateProviderSettings(settings: ProviderSettingsInput): string[] {
  const errors: string[] = []
  const kind = settings.provider
  const defaults = defaultsFor(kind)
  if (!defaults) {
    errors.push(`idp_provider: ${JSON.stringify(kind)} is not supported (one of ${[...PROVIDER_NAMES, 'builtin'].join(', ')})`)
    return errors
  }
  if (settings.clientId.trim() === '') errors.push(`idp_client_id is required for idp_provider ${kind}`)
  if (SECRET_REQUIRED.has(kind) && (settings.clientSecret ?? '') === '') {
    errors.push(`idp_client_secret is required for idp_provider ${kind}`)
  }

  const url = settings.url !== undefined && settings.url !== '' ? settings.url : undefined
  if (url === undefined) {
    if (defaults.issuerUrl === undefined) errors.push(`idp_provider_url is required for idp_provider ${kind}`)
  } else {
    const problem = providerUrlProblem(url, { allowPlainHttp: true })
    if (problem) errors.push(`idp_provider_url: ${problem}`)
    else {
      const parsed = new URL(url)
      if (kind === 'github' && parsed.pathname !== '/') {
        errors.push(`idp_provider_url: for github, the GitHub Enterprise server's root URL (${parsed.origin}), without a path`)
      }
      const tenant = parsed.pathname.split('/')[1] ?? ''
      if (kind === 'azure' && AZURE_MULTI_TENANT.has(tenant.toLowerCase()) && parsed.origin !== 'https://login.microsoftonline.com') {
        errors.push(
          `idp_provider_url: the multi-tenant "${tenant}" endpoint is supported only at https://login.microsoftonline.com; use your tenant's URL`,
        )
      }
    }
  }

  for (const scope of settings.scopes ?? []) {
    if (scope === '' || /\s/.test(scope)) errors.push(`idp_scopes: ${JSON.stringify(scope)} is not a single scope`)
  }
  for (const name of Object.keys(settings.requestParams ?? {})) {
    if (PROTOCOL_PARAMS.has(name)) {
      errors.push(
        `idp_request_params: "${name}" is set by Portcullis and cannot be configured${name === 'scope' ? ' (use idp_scopes)' : ''}`,
      )
    }
  }
  return errors
}

/** The URL, scopes and request parameters a provider is built with, after defaults. */
export interface EffectiveProviderSettings {
  /** Issuer URL (OIDC) or web base URL (GitHub). */
  url: string
  scopes: readonly string[]
  requestParams: Readonly<Record<string, string>>
}

/** Apply a provider's defaults to settings (assumed valid). */
export function effectiveProviderSettings(settings: ProviderSettingsInput): EffectiveProviderSettings {
  const defaults = defaultsFor(settings.provider)
  if (!defaults) throw new TypeError(`unsupported idp_provider ${JSON.stringify(settings.provider)}`)
  let url = settings.url !== undefined && settings.url !== '' ? settings.url : (defaults.issuerUrl ?? '')
  if (defaults.trimTrailingSlash) url = url.replace(/\/+$/, '')
  if (defaults.issuerTrailingSlash && !url.endsWith('/')) url = `${url}/`
  const configured = settings.requestParams
  const requestParams =
    configured && Object.keys(configured).length > 0
      ? defaults.requestParamsMode === 'merge'
        ? { ...defaults.requestParams, ...configured }
        : { ...configured }
      : { ...defaults.requestParams }
  return { url, scopes: effectiveScopes(defaults, settings.scopes, url), requestParams }
}

/**
 * Build the provider for `settings`. Nothing is requested until first use (discovery is lazy).
 * @throws {TypeError} when {@link validateProviderSettings} reports problems, or `id` is empty
 */
export function createIdentityProvider(
  settings: ProviderSettings,
  options: IdentityProviderFactoryOptions = {},
): IdentityProvider {
  if (settings.id === '') throw new TypeError('identity provider settings need an id (see providerIdFor)')
  const errors = validateProviderSettings(settings)
  if (errors.length > 0) throw new TypeError(`identity provider ${settings.id}: ${errors.join('; ')}`)
  const kind = settings.provider
  const defaults = defaultsFor(kind)
  if (!defaults || (kind !== 'builtin' && !isProviderName(kind))) throw new TypeError(`unsupported idp_provider ${kind}`)
  const effective = effectiveProviderSettings(settings)
  const configured = new URL(effective.url)
  // A plain-HTTP provider URL the operator wrote allows plain HTTP to that origin only.
  const plainHttp = configured.protocol === 'http:'
  const fetch = guardedFetch(options.fetch, plainHttp && !isLoopbackHost(configured.hostname) ? configured.origin : undefined)

  if (defaults.protocol === 'oauth2') {
    return createGitHubProvider({
      id: settings.id,
      url: effective.url,
      clientId: settings.clientId,
      clientSecret: settings.clientSecret ?? '',
      scopes: effective.scopes,
      requestParams: effective.requestParams,
      fetch,
      timeoutSeconds: options.timeoutSeconds,
      now: options.now,
    })
  }

  const revocationPath = defaults.revocationPathFallback
  const oidcOptions: OidcProviderOptions = {
    id: settings.id,
    issuerUrl: effective.url,
    clientId: settings.clientId,
    scopes: effective.scopes,
    requestParams: effective.requestParams,
    fetch,
    // openid-client refuses http: unless told; the guarded fetch still limits it to loopback hosts
    // and the configured origin.
    allowInsecureRequests: plainHttp || isLoopbackHost(configured.hostname),
    providerName: kind,
    userIdClaim: defaults.userIdClaim,
    callbackMethod: defaults.formPostCallback ? 'POST' : 'GET',
    signOut: defaults.signOut,
    percentEncodeSpaces: defaults.percentEncodeSpaces,
  }
  if (settings.clientSecret !== undefined && settings.clientSecret !== '') oidcOptions.clientSecret = settings.clientSecret
  if (defaults.tokenEndpointAuthMethod && oidcOptions.clientSecret !== undefined) {
    oidcOptions.tokenEndpointAuthMethod = defaults.tokenEndpointAuthMethod
  }
  if (options.timeoutSeconds !== undefined) oidcOptions.timeoutSeconds = options.timeoutSeconds
  if (options.now) oidcOptions.now = options.now
  if (revocationPath !== undefined) {
    oidcOptions.completeMetadata = (metadata) =>
      metadata.revocation_endpoint || !metadata.authorization_endpoint
        ? undefined
        : { revocation_endpoint: new URL(revocationPath, metadata.authorization_endpoint).href }
  }
  return createOidcProvider(oidcOptions)
}
