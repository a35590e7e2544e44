/**
 * Per-provider defaults for `idp_provider` (Pomerium docs: Identity providers), as data. Configured values
 * (`idp_provider_url`, `idp_scopes`, `idp_request_params`) override these. The validation of
 * the provider settings lives here too, as pure functions: config loading reports its problems
 * with key paths, and the provider factory (`src/idp/factory.ts`) refuses the same settings.
 */
import { createHash } from 'node:crypto'

import { isLoopbackHost } from '../shared/loopback.js'

export const PROVIDER_NAMES = [
  'oidc',
  'google',
  'azure',
  'okta',
  'onelogin',
  'ping',
  'auth0',
  'cognito',
  'gitlab',
  'apple',
  'github',
] as const

export type ProviderName = (typeof PROVIDER_NAMES)[number]

export interface ProviderDefaults {
  name: ProviderName
  /** `oidc`: discovery, ID tokens. `oauth2`: plain OAuth 2 with provider APIs (github, `github.ts`). */
  protocol: 'oidc' | 'oauth2'
  /** Default `idp_provider_url`; undefined when the URL must be configured. */
  issuerUrl: string | undefined
  scopes: readonly string[]
  /**
   * Scopes used instead of `scopes` when the configured URL contains `urlIncludes` (OneLogin's
   * v2 endpoint `/oidc/2`, which refuses `offline_access`).
   */
  scopesWhenUrl?: { urlIncludes: string; scopes: readonly string[] }
  requestParams: Readonly<Record<string, string>>
  /**
   * What a configured `idp_request_params` does to `requestParams`: `replace` them (Pomerium's
   * google, azure and generic providers) or `merge` over them (apple, whose `response_mode` stays).
   */
  requestParamsMode: 'replace' | 'merge'
  /** The claim that becomes the Portcullis user id. */
  userIdClaim: 'sub' | 'oid'
  /**
   * Sign-out: `end_session` = RP-initiated logout via discovery's `end_session_endpoint`;
   * `auth0` = `<url>/v2/logout?returnTo=&client_id=`; `cognito` = `<url>/logout?client_id=&logout_uri=`;
   * `none` = no provider logout.
   */
  signOut: 'end_session' | 'auth0' | 'cognito' | 'none'
  /** Append `/` to the configured URL before discovery (Auth0's issuer has one). */
  issuerTrailingSlash: boolean
  /** Remove a trailing `/` from the configured URL (Pomerium: google, gitlab, cognito, onelogin). */
  trimTrailingSlash: boolean
  /** Token-endpoint client authentication; default chosen from discovery (basic unless post-only). */
  tokenEndpointAuthMethod?: 'client_secret_post'
  /** Write spaces in the authorization URL as `%20`, not `+` (Apple refuses `+`). */
  percentEncodeSpaces: boolean
  /**
   * Revocation endpoint path, on the authorization endpoint's origin, for providers whose discovery
   * omits one (Cognito: `/oauth2/revoke`).
   */
  revocationPathFallback?: string
  /** Skip the issuer check for multi-tenant URLs (Azure `common`, `organizations`, `consumers`). */
  skipIssuerCheckForMultiTenant: boolean
  /** The callback arrives as a POST (`response_mode=form_post`); the CSRF cookie needs SameSite=None. */
  formPostCallback: boolean
  /** Free-text notes for docs and error messages. */
  notes: string
}

const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const
const BASIC_SCOPES = ['openid', 'profile', 'email'] as const

const base = {
  protocol: 'oidc',
  issuerUrl: undefined,
  scopes: OIDC_SCOPES,
  requestParams: {},
  requestParamsMode: 'replace',
  userIdClaim: 'sub',
  signOut: 'end_session',
  issuerTrailingSlash: false,
  trimTrailingSlash: false,
  percentEncodeSpaces: false,
  skipIssuerCheckForMultiTenant: false,
  formPostCallback: false,
} as const satisfies Omit<ProviderDefaults, 'name' | 'notes'>

const DEFAULTS: { readonly [N in ProviderName]: ProviderDefaults & { name: N } } = {
  oidc: {
    ...base,
    name: 'oidc',
    notes: 'Generic OpenID Connect (Keycloak, Authentik, Dex, Zitadel, ...); idp_provider_url required.',
  },
  google: {
    ...base,
    name: 'google',
    issuerUrl: 'https://accounts.google.com',
    scopes: BASIC_SCOPES,
    requestParams: { prompt: 'select_account consent', access_type: 'offline' },
    trimTrailingSlash: true,
    notes: 'Refresh tokens come from access_type=offline with prompt=consent, not from offline_access.',
  },
  azure: {
    ...base,
    name: 'azure',
    issuerUrl: 'https://login.microsoftonline.com/common/v2.0',
    requestParams: { prompt: 'select_account' },
    userIdClaim: 'oid',
    skipIssuerCheckForMultiTenant: true,
    notes:
      'Microsoft Entra ID; the user id is the oid claim; for common/organizations/consumers the ID token issuer must be the template filled with its tid.',
  },
  okta: { ...base, name: 'okta', notes: 'Okta org or authorization-server URL required.' },
  onelogin: {
    ...base,
    name: 'onelogin',
    issuerUrl: 'https://openid-connect.onelogin.com/oidc',
    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
    scopesWhenUrl: { urlIncludes: '/oidc/2', scopes: ['openid', 'profile', 'email', 'groups'] },
    trimTrailingSlash: true,
    notes: 'v1 endpoint by default; a /oidc/2 URL uses the v2 scopes (no offline_access).',
  },
  ping: { ...base, name: 'ping', notes: 'PingOne or PingFederate URL required.' },
  auth0: {
    ...base,
    name: 'auth0',
    signOut: 'auth0',
    issuerTrailingSlash: true,
    notes: 'Auth0 tenant URL required; sign-out via /v2/logout?returnTo=&client_id=.',
  },
  cognito: {
    ...base,
    name: 'cognito',
    scopes: ['openid', 'email', 'profile'],
    signOut: 'cognito',
    trimTrailingSlash: true,
    revocationPathFallback: '/oauth2/revoke',
    notes: 'Cognito user-pool URL required; sign-out via /logout?client_id=&logout_uri= on the hosted-UI domain.',
  },
  gitlab: {
    ...base,
    name: 'gitlab',
    issuerUrl: 'https://gitlab.com',
    scopes: BASIC_SCOPES,
    trimTrailingSlash: true,
    notes: 'gitlab.com or a self-hosted URL.',
  },
  apple: {
    ...base,
    name: 'apple',
    issuerUrl: 'https://appleid.apple.com',
    scopes: ['name', 'email'],
    requestParams: { response_mode: 'form_post' },
    requestParamsMode: 'merge',
    signOut: 'none',
    formPostCallback: true,
    tokenEndpointAuthMethod: 'client_secret_post',
    percentEncodeSpaces: true,
    notes:
      'Callback is a form POST; no access-token bearer support; idp_client_secret is the signed client-secret JWT, used as is.',
  },
  github: {
    ...base,
    name: 'github',
    protocol: 'oauth2',
    issuerUrl: 'https://github.com',
    scopes: ['user:email', 'read:org'],
    signOut: 'none',
    notes:
      'OAuth 2, not OIDC: user, verified primary email and teams from the REST API (api.github.com, or <idp_provider_url>/api/v3 for GHE); no ID tokens, no refresh tokens.',
  },
}

export function isProviderName(name: string): name is ProviderName {
  return (PROVIDER_NAMES as readonly string[]).includes(name)
}

/** The defaults of `idp_provider: name`, or undefined for an unknown name. */
export function providerDefaults(name: string): ProviderDefaults | undefined {
  return isProviderName(name) ? DEFAULTS[name] : undefined
}

/** The scopes to request: configured ones, else the provider's (per URL variant, for OneLogin). */
export function effectiveScopes(
  defaults: ProviderDefaults,
  configured: readonly string[] | undefined,
  url: string | undefined,
): readonly string[] {
  if (configured && configured.length > 0) return configured
  const variant = defaults.scopesWhenUrl
  if (variant && url?.includes(variant.urlIncludes)) return variant.scopes
  return defaults.scopes
}

/**
 * Parameters only this module sets on an authorization request. Caller-supplied copies (from
 * `requestParams` or `extraParams`) are dropped, so each appears exactly once (hostile-input case: sessions / cookies / csrf).
 */
export const PROTOCOL_PARAMS: ReadonlySet<string> = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'nonce',
  'code_challenge',
  'code_challenge_method',
  'request',
  'request_uri',
])

/** `https:`, or `http:` to a loopback host. */
export function isAllowedProviderUrl(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))
}

/**
 * Why a provider URL is refused, or undefined when it is acceptable. `allowPlainHttp` accepts
 * `http://` on any host (the configured `idp_provider_url`; the caller warns about it).
 */
export function providerUrlProblem(raw: string, options: { readonly allowPlainHttp?: boolean } = {}): string | undefined {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return `${JSON.stringify(raw)} is not a URL`
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `${JSON.stringify(raw)} must be an https URL`
  if (!isAllowedProviderUrl(url) && !(options.allowPlainHttp === true && url.protocol === 'http:')) {
    return `${JSON.stringify(raw)} uses plain HTTP; only loopback hosts (127.0.0.0/8, ::1, localhost) may`
  }
  if (url.username !== '' || url.password !== '') return `${JSON.stringify(raw)} must not carry credentials`
  if (url.search !== '' || url.hash !== '') return `${JSON.stringify(raw)} must not have a query or fragment`
  return undefined
}

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
export function defaultsFor(kind: string): ProviderDefaults | undefined {
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
