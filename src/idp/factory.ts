/**
 * One factory from provider settings (`idp_provider`, `idp_provider_url`, `idp_client_id`,
 * `idp_client_secret`, `idp_scopes`, `idp_request_params`) to an {@link IdentityProvider}, for
 * every provider of Pomerium docs: Identity providers plus `builtin` (Portcullis' own OpenID provider). The
 * per-provider differences and the settings' validation are data in `config/providers.ts`; this module applies them, and applies the
 * transport rule of `transport.ts` (HTTPS, plain HTTP only to loopback hosts) to every provider.
 */
import { defaultsFor, effectiveProviderSettings, isProviderName, validateProviderSettings } from '../config/providers.js'
import type { ProviderSettings } from '../config/providers.js'
import { createGitHubProvider } from './github.js'
import { createOidcProvider } from './oidc.js'
import type { IdpFetch, OidcProviderOptions } from './oidc.js'
import type { IdentityProvider } from './provider.js'
import { guardedFetch } from './transport.js'
import { isLoopbackHost } from '../shared/loopback.js'


interface IdentityProviderFactoryOptions {
  /** Every request to the provider goes through this fetch (after the transport rule). */
  fetch?: IdpFetch
  /** Clock in epoch milliseconds (default `Date.now`). */
  now?: () => number
  /** Timeout per request to the provider, in seconds (default 30). */
  timeoutSeconds?: number
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
