/**
 * Consistency rules of the sign-in settings that the per-key descriptors cannot express: a
 * configured identity provider needs a client id, a URL where the provider has no default, and
 * an authenticate URL that is this Portcullis rather than Pomerium's hosted service.
 */
import { validateProviderSettings } from '../authenticate/idp/factory.js'
import type { LoadContext } from './normalise.js'

/** The OAuth client id the built-in provider registers for Portcullis when `idp_client_id` is unset. */
export const BUILTIN_CLIENT_ID = 'portcullis'

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export function checkSignIn(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): void {
  const provider = raw['idp_provider']
  if (typeof provider !== 'string' || provider === '' || provider === 'hosted') return
  const text = (key: string): string | undefined => (typeof raw[key] === 'string' && raw[key] !== '' ? (raw[key]) : undefined)
  const problems = validateProviderSettings({
    provider,
    // The built-in provider's URL defaults to its listen address.
    url: text('idp_provider_url') ?? (provider === 'builtin' ? `http://${text('builtin_idp_address') ?? '127.0.0.1:8081'}` : undefined),
    // The built-in provider registers its own client when none is configured.
    clientId: text('idp_client_id') ?? (provider === 'builtin' ? BUILTIN_CLIENT_ID : ''),
    clientSecret: text('idp_client_secret') ?? (provider === 'builtin' ? 'generated' : undefined),
    scopes: Array.isArray(raw['idp_scopes']) ? (raw['idp_scopes'] as string[]) : undefined,
    requestParams: typeof raw['idp_request_params'] === 'object' && raw['idp_request_params'] !== null ? (raw['idp_request_params'] as Record<string, string>) : undefined,
  })
  if (provider === 'builtin' && text('builtin_idp_users_file') === undefined) {
    ctx.issues.error('builtin_idp_users_file', undefined, 'required with idp_provider: builtin (the YAML file of users; `portcullis users add` creates it)')
  }
  for (const problem of problems) {
    const key = /^(idp_[a-z_]+)/.exec(problem)?.[1] ?? 'idp_provider'
    ctx.issues.error(key, raw[key], problem.replace(/^idp_[a-z_]+: /, ''))
  }
  const authenticate = raw['authenticate_service_url']
  if (typeof authenticate === 'string') {
    let parsed: URL | undefined
    try {
      parsed = new URL(authenticate)
    } catch {
      // the descriptor check has reported it
    }
    if (parsed?.hostname === 'authenticate.pomerium.app') {
      ctx.issues.error(
        'authenticate_service_url',
        authenticate,
        "expected this Portcullis' own authenticate URL (e.g. https://authenticate.example.com, a host name that reaches this proxy): Pomerium's hosted authenticate service is not supported",
      )
    } else if (parsed && parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname))) {
      ctx.issues.error('authenticate_service_url', authenticate, 'expected an https:// URL (session cookies are Secure; plain http only on localhost names)')
    }
  }
}
