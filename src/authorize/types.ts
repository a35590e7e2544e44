/**
 * The contract between a data plane and the authorize service.
 *
 * The proxy builds a `CheckRequest` after routing and hygiene and before forwarding; anything
 * else (an Envoy ext_authz adapter, a forward-auth endpoint for nginx) can build the same
 * request. The result either lets the request through, with header changes for the upstream,
 * or answers it (deny, sign-in redirect) without forwarding.
 */
import type { RouteConfig } from '../config/types.js'
import type { ClientCertificateInfo } from '../shared/x509.js'

export type { ClientCertificateInfo }

export interface CheckRequest {
  readonly requestId: string
  readonly route: RouteConfig
  readonly method: string
  /** Canonical host (lower case, no port, no trailing dot). */
  readonly host: string
  /** The Host (or :authority) as the client sent it, port included: for URLs back to this host. */
  readonly authority: string
  /** Normalised path: exactly what will be forwarded. */
  readonly path: string
  /** Raw query string including the leading `?`, or ''. */
  readonly query: string
  /** Request headers, lower-case names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** The trusted client IP (after `xff_num_trusted_hops`). */
  readonly clientIp: string
  readonly scheme: 'http' | 'https'
  /** Set when the listener asks for client certificates (`downstream_mtls`). */
  readonly clientCertificate?: ClientCertificateInfo
  /**
   * Tunnels only (docs/tunnels.md): other hosts whose session tokens this request accepts: the
   * names the client dialled Portcullis by (TLS server name, the listener's own address), where
   * `/.pomerium/api/v1/login` issued the token. A CONNECT's `host` is its target, not Portcullis.
   */
  readonly tokenHosts?: readonly string[]
}

export type CheckResult =
  | {
      readonly allow: true
      /** Headers to set on the upstream request (override client values). */
      readonly setHeaders?: Readonly<Record<string, string>>
      /** Lower-case header names to remove from the upstream request. */
      readonly removeHeaders?: readonly string[]
      /** Headers sent once per value (Kubernetes `Impersonate-Group`); replace client copies too. */
      readonly setMultiHeaders?: Readonly<Record<string, readonly string[]>>
      /** Lower-case header name prefixes to remove (`impersonate-extra-`). */
      readonly removeHeaderPrefixes?: readonly string[]
      /** Key for hash load balancing (session id once sessions exist). */
      readonly routingKey?: string
      /** Who was allowed (email, else user id), for the data plane's own logs (tunnels). */
      readonly user?: string
    }
  | Denial

/**
 * Stable codes of the answers that are not "allow", so that a front end (the proxy, an ext_authz
 * or forward-auth adapter) can choose how to answer without reading prose. Part of the internal
 * API's v1 contract: add codes, never rename one.
 */
export type DenialCode =
  /** 403: the route's policy did not admit the request (`reasons` says which rules). */
  | 'policy-denied'
  /** 495: the route needs a client certificate it accepts. */
  | 'client-certificate'
  /** 450: the route's device rule refused the session's device (another one, or not approved). */
  | 'device-denied'
  /** The route needs a device of a type the session has no credential of (enrollment, docs/devices.md). */
  | 'device-enrollment'
  /** 302 to `location`: a browser without a session goes to sign in. */
  | 'sign-in'
  /** 401: no session, and the client is a script (no redirect). */
  | 'unauthenticated'
  /** 401: the request carried a token that is not valid. */
  | 'invalid-credential'
  /** 403: the route needs a user and no identity provider is configured. */
  | 'sign-in-not-configured'
  /** 200: `/robots.txt` of a protected route, answered by the front end (disallow everything). */
  | 'robots-txt'
  /** 502: an upstream credential (a service account token) could not be obtained. */
  | 'upstream-credential'
  /** 503: a dependency (session store, token validation, the authorize service) is unavailable. */
  | 'unavailable'
  /** 503: the authorize service does not know the route (different configurations). */
  | 'unknown-route'
  /** A code this build does not know (a newer authorize service): answered from `status` and `reason`. */
  | 'denied'

/**
 * A request answered without forwarding: data only. The front end renders it (HTML page, JSON,
 * plain text) for its own client; the authorizer never writes markup.
 */
export interface Denial {
  readonly allow: false
  readonly status: number
  readonly code: DenialCode
  /** What happened, in words a person can act on: the headline of the error page, `error` in JSON. */
  readonly reason: string
  /** Policy denials: why, rule by rule, in plain words (the "Why:" list of the page). */
  readonly reasons?: readonly string[]
  /** Policy denials: Pomerium's reason codes of the decision (`claim-unauthorized`), for JSON clients. */
  readonly policyReasons?: readonly string[]
  /** Who is signed in (email, else user id): the page names them and offers to sign out. */
  readonly user?: string
  /** The route that refused (its name, else its `from`). */
  readonly route?: string
  /** `show_error_details`: the full evaluation as text. */
  readonly details?: string
  /** Sign-in redirects: where to. */
  readonly location?: string
  /** Headers the answer must carry (a Set-Cookie with a sign-in redirect). */
  readonly headers?: Readonly<Record<string, string>>
}

/** The narrow interface the proxy depends on. May answer synchronously to keep the hot path free of async hops. */
export interface Authorizer {
  check(request: CheckRequest): CheckResult | Promise<CheckResult>
}
