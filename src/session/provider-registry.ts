/**
 * One IdentityProvider object per configured client, kept across config reloads while its
 * settings are unchanged, so discovery documents and JWKS stay cached.
 */
import type { IdentityProvider } from '../idp/provider.js'
import type { AuthSettings, IdpSettings } from './settings.js'

export type ProviderFactory = (settings: IdpSettings) => IdentityProvider

export class ProviderRegistry {
  readonly #factory: ProviderFactory
  readonly #cache = new Map<string, { key: string; provider: IdentityProvider }>()
  /** Settings objects already resolved: one config generation asks for the same object each request. */
  readonly #resolved = new WeakMap<IdpSettings, IdentityProvider>()

  constructor(factory: ProviderFactory) {
    this.#factory = factory
  }

  /** The provider for `idpId` under the current settings, or undefined when no such client is configured. */
  get(settings: AuthSettings, idpId: string): IdentityProvider | undefined {
    const s = settings.providers.get(idpId)
    if (!s) return undefined
    const known = this.#resolved.get(s)
    if (known) return known
    const key = JSON.stringify(s)
    const cached = this.#cache.get(idpId)
    const provider = cached && cached.key === key ? cached.provider : this.#factory(s)
    this.#cache.set(idpId, { key, provider })
    this.#resolved.set(s, provider)
    return provider
  }
}
