/**
 * The key that signs the identity assertion (`signing_key`, else derived from `shared_secret`)
 * and its JWKS: authorize signs with it, the route endpoints publish it. Reloaded with the config.
 */
import { jwksResponse, loadSigningKeys } from '../authorize/identity/index.js'
import type { JwksResponse, SigningKeys } from '../authorize/identity/index.js'
import type { Config } from '../config/types.js'
import type { Secrets } from '../shared/secrets.js'

export interface SigningKeySource {
  keys(): SigningKeys
  jwks(): JwksResponse
  applyConfig(config: Config): void
}

export function setupSigningKeys(config: Config, secrets: Secrets): SigningKeySource {
  const load = (c: Config): SigningKeys => loadSigningKeys(c.signingKey, secrets.sharedSecret)
  let keys = load(config)
  let jwks = jwksResponse(keys)
  return {
    keys: () => keys,
    jwks: () => jwks,
    applyConfig(next) {
      keys = load(next)
      jwks = jwksResponse(keys)
    },
  }
}
