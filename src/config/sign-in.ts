/**
 * Consistency rules of the sign-in settings that the per-key descriptors cannot express: a
 * configured identity provider needs a client id, a URL where the provider has no default, and
 * an authenticate URL that is this Portcullis rather than Pomerium's hosted service. Also: with
 * no `idp_provider` but a users file for the built-in provider, that provider is used; and
 * protected routes with no sign-in at all are reported with what to add.
 */
import { validateProviderSettings } from './providers.js'
import { isBrowserLoopbackHost, isLoopbackHost } from '../shared/loopback.js'
import type { RouteConfig } from './types.js'
import type { LoadContext } from './normalise.js'

/** The OAuth client id the built-in provider registers for Portcullis when `idp_client_id` is unset. */
export const BUILTIN_CLIENT_ID = 'portcullis'

/** Pomerium's default `authenticate_service_url`: its hosted service, which Portcullis cannot use. */
const HOSTED_AUTHENTICATE_HOST = 'authenticate.pomerium.app'

const text = (raw: Readonly<Record<string, unknown>>, key: string): string | undefined =>
  typeof raw[key] === 'string' && raw[key] !== '' ? raw[key] : undefined

function signInConfigured(raw: Readonly<Record<string, unknown>>): boolean {
  const provider = text(raw, 'idp_provider')
  return provider !== undefined && provider !== 'hosted'
}

/**
 * With no `idp_provider` written but `builtin_idp_users_file` set, the built-in provider is the
 * only provider that can sign those users in: use it (and say so) rather than refuse everyone.
 */
export function applyBuiltinDefault(raw: Record<string, unknown>, ctx: LoadContext): void {
  if (raw['idp_provider'] !== undefined || text(raw, 'builtin_idp_users_file') === undefined) return
  raw['idp_provider'] = 'builtin'
  ctx.issues.warning(
    'idp_provider',
    undefined,
    'not set: using the built-in provider, whose users are in builtin_idp_users_file (write idp_provider: builtin to make this explicit)',
  )
}

/**
 * `written`: the top-level keys the file or the environment set, so that a problem with a
 * default says that nothing was written rather than quoting a value the user never wrote.
 */
export function checkSignIn(raw: Readonly<Record<string, unknown>>, ctx: LoadContext, written: ReadonlySet<string>): void {
  checkAuthenticateUrl(raw, ctx, written)
  if (!signInConfigured(raw)) return
  const provider = text(raw, 'idp_provider') ?? ''
  const url = text(raw, 'idp_provider_url')
  const problems = validateProviderSettings({
    provider,
    // The built-in provider's URL defaults to its listen address.
    url: url ?? (provider === 'builtin' ? `http://${text(raw, 'builtin_idp_address') ?? '127.0.0.1:8081'}` : undefined),
    // The built-in provider registers its own client when none is configured.
    clientId: text(raw, 'idp_client_id') ?? (provider === 'builtin' ? BUILTIN_CLIENT_ID : ''),
    clientSecret: text(raw, 'idp_client_secret') ?? (provider === 'builtin' ? 'generated' : undefined),
    scopes: Array.isArray(raw['idp_scopes']) ? (raw['idp_scopes'] as string[]) : undefined,
    requestParams: typeof raw['idp_request_params'] === 'object' && raw['idp_request_params'] !== null ? (raw['idp_request_params'] as Record<string, string>) : undefined,
  })
  if (provider === 'builtin' && text(raw, 'builtin_idp_users_file') === undefined) {
    ctx.issues.error('builtin_idp_users_file', undefined, 'required with idp_provider: builtin (the YAML file of users; `portcullis users add` creates it)')
  }
  for (const problem of problems) {
    const key = /^(idp_[a-z_]+)/.exec(problem)?.[1] ?? 'idp_provider'
    ctx.issues.error(key, raw[key], problem.replace(/^idp_[a-z_]+: /, ''))
  }
  if (url !== undefined && problems.length === 0) {
    const parsed = new URL(url)
    if (parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname)) {
      // Pomerium accepts it (its own acceptance tests run Keycloak over http on a private network).
      ctx.issues.warning(
        'idp_provider_url',
        url,
        'plain http to the identity provider: authorization codes, the client secret and tokens cross the network unencrypted; accepted (as Pomerium does) for a provider on a trusted network; use https where you can',
      )
    }
  }
}

function checkAuthenticateUrl(raw: Readonly<Record<string, unknown>>, ctx: LoadContext, written: ReadonlySet<string>): void {
  const authenticate = text(raw, 'authenticate_service_url')
  if (authenticate === undefined || !URL.canParse(authenticate)) return // the descriptor check has reported it
  const parsed = new URL(authenticate)
  if (parsed.hostname === HOSTED_AUTHENTICATE_HOST) {
    // Pomerium's hosted authenticate only matters once sign-in is configured; public routes work without.
    if (!signInConfigured(raw)) return
    const expected = "this Portcullis' own authenticate URL (e.g. https://authenticate.example.com, a host name that reaches this proxy)"
    if (written.has('authenticate_service_url')) {
      ctx.issues.error('authenticate_service_url', authenticate, `expected ${expected}: Pomerium's hosted authenticate service is not supported`)
    } else {
      ctx.issues.error(
        'authenticate_service_url',
        undefined,
        `required with idp_provider: set it to ${expected}; when it is not set, Pomerium uses its hosted authenticate service (${authenticate}), which Portcullis does not support`,
        'key',
      )
    }
    return
  }
  if (parsed.protocol === 'https:' || (parsed.protocol === 'http:' && isBrowserLoopbackHost(parsed.hostname))) return
  if (parsed.protocol === 'http:' && raw['insecure_server'] === true) {
    // As Pomerium: TLS is terminated in front (a load balancer), which then talks plain HTTP to us.
    ctx.issues.warning(
      'authenticate_service_url',
      authenticate,
      'plain http accepted because insecure_server is true (TLS terminated in front of Portcullis): session cookies are always Secure, so browsers keep them only when users reach authenticate and the routes over https',
    )
    return
  }
  ctx.issues.error(
    'authenticate_service_url',
    authenticate,
    'expected an https:// URL (session cookies are Secure); plain http only on localhost names, or with insecure_server: true when TLS is terminated in front of Portcullis',
  )
}

/**
 * Routes that need a signed-in user when sign-in is not configured: each answers 403 to
 * everyone. Reported once, with the count and exactly what to add.
 */
export function checkSignInCoverage(raw: Readonly<Record<string, unknown>>, routes: readonly RouteConfig[], ctx: LoadContext): void {
  if (signInConfigured(raw)) return
  // Redirect and fixed-response routes answer without a policy check.
  const protectedRoutes = routes.filter((r) => !r.allowPublicUnauthenticatedAccess && r.redirect === undefined && r.response === undefined)
  if (protectedRoutes.length === 0) return
  const n = protectedRoutes.length
  ctx.issues.warning(
    'idp_provider',
    raw['idp_provider'],
    `${raw['idp_provider'] === 'hosted' ? "hosted (Pomerium's hosted authenticate, which Portcullis does not support)" : 'not set'}, so nobody can sign in: ${n} of ${routes.length} route${routes.length === 1 ? '' : 's'} ` +
      `(those that proxy without allow_public_unauthenticated_access) will answer 403 to everyone. Add either ` +
      'idp_provider (oidc, google, okta, ...) with idp_provider_url, idp_client_id and idp_client_secret, ' +
      'or idp_provider: builtin with builtin_idp_users_file (users kept by Portcullis; see docs/builtin-idp.md); ' +
      "and authenticate_service_url: this Portcullis' authenticate URL (e.g. https://authenticate.example.com)",
    'key',
    'no_sign_in',
  )
}
