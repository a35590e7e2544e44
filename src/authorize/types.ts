/**
 * The contract between a data plane and the authorize service.
 *
 * The proxy builds a `CheckRequest` after routing and hygiene and before forwarding; anything
 * else (an Envoy ext_authz adapter, a forward-auth endpoint for nginx) can build the same
 * request. The result either lets the request through, with header changes for the upstream,
 * or answers it (deny, sign-in redirect) without forwarding.
 */
import type { RouteConfig } from '../config/types.js'

/**
 * The client certificate of a request's connection (`downstream_mtls`), as the TLS layer saw it.
 * Absent from a CheckRequest when the listener does not ask for certificates.
 */
export interface ClientCertificateInfo {
  /** The client sent a certificate. */
  readonly presented: boolean
  /** It chains to a `downstream_mtls` CA within `max_verify_depth`, is not revoked by the CRLs, and matches `match_subject_alt_names`. */
  readonly valid: boolean
  /** Why it is not valid, in words (absent when valid or not presented). */
  readonly problem?: string
  /** SHA-256 of the leaf's DER, lower-case hex without colons. */
  readonly fingerprintSha256: string
  /** SHA-256 of the leaf's SubjectPublicKeyInfo, standard base64. */
  readonly spkiSha256: string
  readonly subject: string
  readonly issuer: string
  readonly serialNumber: string
  readonly sanDns: readonly string[]
  readonly sanEmail: readonly string[]
  readonly sanUri: readonly string[]
  readonly sanIp: readonly string[]
  /** The leaf certificate, PEM (for `${pomerium.client_cert_*}` templates). */
  readonly leafPem: string
}

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
    }
  | {
      readonly allow: false
      readonly status: number
      /** Why, in words a person can act on; shown on the error page. */
      readonly reason: string
      /** Set for sign-in redirects. */
      readonly location?: string
      readonly headers?: Readonly<Record<string, string>>
      /** A body rendered by the authorizer (the detailed 403 page, robots.txt); else the proxy renders `reason`. */
      readonly body?: { readonly contentType: string; readonly text: string; readonly headers?: Readonly<Record<string, string>> }
    }

/** The narrow interface the proxy depends on. May answer synchronously to keep the hot path free of async hops. */
export interface Authorizer {
  check(request: CheckRequest): CheckResult | Promise<CheckResult>
}
