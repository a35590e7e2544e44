/**
 * Builds the IdentityProvider for one configured client with the named-provider defaults of
 * `idp/factory.ts` (which also enforces HTTPS to providers, except on loopback hosts).
 */
import { createIdentityProvider } from './idp/factory.js'
import type { ProviderKind } from './idp/factory.js'
import type { ProviderFactory } from './provider-registry.js'

export function createProviderFactory(): ProviderFactory {
  return (s) => createIdentityProvider({ ...s, provider: s.provider as ProviderKind })
}
