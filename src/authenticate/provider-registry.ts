/**
 * One IdentityProvider object per configured client, kept across config reloads while its
 * settings are unchanged, so discovery documents and JWKS stay cached.
 */
import type { IdentityProvider } from './idp/provider.js'
import type { AuthSettings, IdpSettings } from './settings.js'

export type ProviderFactory = (settings: IdpSettings) => IdentityProvider

export class ProviderRegistry {
  readonly #factory: ProviderFactory
  readonly #cache = new Map<string, { key: string; provider: IdentityProvider }>()

  constructor(factory: ProviderFactory) {
    this.#factory = factory
  }

  /** The provider for `idpId` under the current settings, or undefined when no such client is configured. */
  get(settings: AuthSettings, idpId: string): IdentityProvider | undefined {
    const s = settings.providers.get(idpId)
    if (!s) return undefined
    const key = JSON.stringify(s)
    const cached = this.#cache.get(idpId)
    if (cached && cached.key === key) return cached.provider
    const provider = this.#factory(s)
    this.#cache.set(idpId, { key, provider })
    return provider
  }
}
