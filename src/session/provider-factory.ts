/**
 * Builds the IdentityProvider for one configured client with the named-provider defaults of
 * `idp/factory.ts` (which also enforces HTTPS to providers, except on loopback hosts).
 */
import { createIdentityProvider } from '../idp/factory.js'
import type { ProviderKind } from '../config/providers.js'
import type { IdpFetch } from '../idp/oidc.js'
import type { ProviderFactory } from './provider-registry.js'

/** `fetch`: every request to a provider goes through it (tracing wraps it; default: global fetch). */
export function createProviderFactory(fetch?: IdpFetch): ProviderFactory {
  return (s) => createIdentityProvider({ ...s, provider: s.provider as ProviderKind }, fetch ? { fetch } : {})
}
