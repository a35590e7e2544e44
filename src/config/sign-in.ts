/**
 * Consistency rules of the sign-in settings that the per-key descriptors cannot express: a
 * configured identity provider needs a client id, a URL where the provider has no default, and
 * an authenticate URL that is this Portcullis rather than Pomerium's hosted service.
 */
import type { LoadContext } from './normalise.js'

/** Providers whose URL has no default (reference section 8). */
const URL_REQUIRED = new Set(['oidc', 'okta', 'ping', 'builtin'])

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export function checkSignIn(raw: Readonly<Record<string, unknown>>, ctx: LoadContext): void {
  const provider = raw['idp_provider']
  if (typeof provider !== 'string' || provider === '' || provider === 'hosted') return
  if (provider !== 'builtin' && (typeof raw['idp_client_id'] !== 'string' || raw['idp_client_id'] === '')) {
    ctx.issues.error('idp_client_id', raw['idp_client_id'], `required with idp_provider: ${provider} (the OAuth client id registered at the provider)`)
  }
  const url = raw['idp_provider_url']
  if (URL_REQUIRED.has(provider) && (typeof url !== 'string' || url === '')) {
    ctx.issues.error('idp_provider_url', url, `required with idp_provider: ${provider} (the provider's issuer URL)`)
  } else if (typeof url === 'string' && url !== '') {
    let parsed: URL | undefined
    try {
      parsed = new URL(url)
    } catch {
      ctx.issues.error('idp_provider_url', url, 'expected an absolute https:// URL')
    }
    if (parsed && parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname))) {
      ctx.issues.error('idp_provider_url', url, 'expected an https:// URL (plain http only for a provider on this machine: localhost, 127.0.0.1, ::1)')
    }
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
