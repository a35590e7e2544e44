/**
 * Builds the IdentityProvider for one configured client. Provider endpoints must be HTTPS, except
 * on loopback hosts (a provider on the same machine: tests, the demo's built-in provider), where
 * nothing crosses the network.
 */
import type { Logger } from '../shared/log.js'
import { createOidcProvider } from './idp/oidc.js'
import type { ProviderFactory } from './provider-registry.js'
import { isLoopback } from './redirects.js'

export function createProviderFactory(logger: Logger): ProviderFactory {
  return (s) => {
    const url = s.url ?? ''
    let loopbackHttp = false
    try {
      const u = new URL(url)
      loopbackHttp = u.protocol === 'http:' && isLoopback(u.hostname.replace(/^\[|\]$/g, '') === '::1' ? '::1' : u.hostname)
    } catch {
      logger.error({ idpId: s.id }, 'idp_provider_url is not a URL')
    }
    return createOidcProvider({
      id: s.id,
      issuerUrl: url,
      clientId: s.clientId,
      ...(s.clientSecret !== undefined ? { clientSecret: s.clientSecret } : {}),
      ...(s.scopes ? { scopes: s.scopes } : {}),
      ...(s.requestParams ? { requestParams: s.requestParams } : {}),
      allowInsecureRequests: loopbackHttp,
    })
  }
}
