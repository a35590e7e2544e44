/**
 * The one transport rule for every identity provider: HTTPS, except to loopback hosts
 * (`isLoopbackHost` in src/shared/loopback.ts), where tests and the demo run providers over plain HTTP,
 * and except to the origin of an `idp_provider_url` the operator wrote as `http://` (accepted,
 * with a warning, as Pomerium accepts it: a provider on a private network). Codes, client secrets
 * and tokens travel on these requests, so the rule is enforced on each one (discovery can name
 * endpoints on other hosts), not only on the configured URL.
 */
import { isAllowedProviderUrl } from '../config/providers.js'
import type { IdpFetch } from './oidc.js'

/**
 * Wrap a fetch so that every request to a provider obeys the transport rule. A refused request
 * fails like a network error (TypeError) before anything is sent. `plainHttpOrigin` is the one
 * `http://` origin (scheme, host and port) also allowed: that of a plain-HTTP `idp_provider_url`.
 */
export function guardedFetch(inner: IdpFetch | undefined, plainHttpOrigin?: string): IdpFetch {
  const next: IdpFetch = inner ?? ((url, init) => fetch(url, init as RequestInit))
  return (url, init) => {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch (cause) {
      return Promise.reject(new TypeError(`identity provider request to an invalid URL`, { cause }))
    }
    if (!isAllowedProviderUrl(parsed) && !(plainHttpOrigin !== undefined && parsed.origin === plainHttpOrigin)) {
      return Promise.reject(
        new TypeError(`refusing a plain-HTTP request to ${parsed.host}: provider endpoints must be HTTPS (loopback excepted)`),
      )
    }
    return next(url, init)
  }
}
