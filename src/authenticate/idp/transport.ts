/**
 * The one transport rule for every identity provider: HTTPS, except to loopback hosts
 * (`127.0.0.0/8`, `::1`, `localhost`), where tests and the demo run providers over plain HTTP,
 * and except to the origin of an `idp_provider_url` the operator wrote as `http://` (accepted,
 * with a warning, as Pomerium accepts it: a provider on a private network). Codes, client secrets
 * and tokens travel on these requests, so the rule is enforced on each one (discovery can name
 * endpoints on other hosts), not only on the configured URL.
 */
import { isLoopbackHost } from '../../shared/loopback.js'
import type { IdpFetch } from './oidc.js'

export { isLoopbackHost }

/** `https:`, or `http:` to a loopback host. */
export function isAllowedProviderUrl(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))
}

/**
 * Why a provider URL is refused, or undefined when it is acceptable. `allowPlainHttp` accepts
 * `http://` on any host (the configured `idp_provider_url`; the caller warns about it).
 */
export function providerUrlProblem(raw: string, options: { readonly allowPlainHttp?: boolean } = {}): string | undefined {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return `${JSON.stringify(raw)} is not a URL`
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return `${JSON.stringify(raw)} must be an https URL`
  if (!isAllowedProviderUrl(url) && !(options.allowPlainHttp === true && url.protocol === 'http:')) {
    return `${JSON.stringify(raw)} uses plain HTTP; only loopback hosts (127.0.0.0/8, ::1, localhost) may`
  }
  if (url.username !== '' || url.password !== '') return `${JSON.stringify(raw)} must not carry credentials`
  if (url.search !== '' || url.hash !== '') return `${JSON.stringify(raw)} must not have a query or fragment`
  return undefined
}

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
