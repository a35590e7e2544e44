/** Test doubles for the session layer's tests (and the authorizer's, which build on it). */
import type { MemoryRecordStore, RecordStore } from '../databroker/index.js'
import type { SessionReadCache } from './session-store.js'

/** A store that counts `get` calls (the store reads a synced copy is meant to spare). */
export function countingGets(backing: MemoryRecordStore): { readonly store: RecordStore; readonly reads: () => number } {
  let reads = 0
  const store = new Proxy(backing, {
    get(target, prop, receiver) {
      if (prop === 'get') return (type: string, id: string) => ((reads += 1), target.get(type, id))
      const value = Reflect.get(target, prop, receiver) as unknown
      // Private fields need the real store as `this`.
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
  return { store, reads: () => reads }
}

/** A session copy kept in a plain map (what `SessionCache` holds, without the sync). */
export function mapSessionCache(): SessionReadCache & { readonly held: Map<string, unknown> } {
  const held = new Map<string, unknown>()
  return { held, get: (id) => held.get(id), note: (id, data) => void (data === undefined ? held.delete(id) : held.set(id, data)) }
}

/** The global settings of an OpenID Connect sign-in, for configs in authorizer tests. */
export function oidcSettingsYaml(sharedSecret: Buffer): string[] {
  return [
    'authenticate_service_url: https://authn.example.com',
    'idp_provider: oidc',
    'idp_provider_url: https://idp.example.com',
    'idp_client_id: c',
    'idp_client_secret: s',
    `shared_secret: ${sharedSecret.toString('base64')}`,
  ]
}
