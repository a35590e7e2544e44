/**
 * Per-provider defaults for `idp_provider` (reference section 8), as data. Configured values
 * (`idp_provider_url`, `idp_scopes`, `idp_request_params`) override these.
 */

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
