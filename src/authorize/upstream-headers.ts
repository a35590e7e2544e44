/**
 * What an allowed request carries to its upstream besides the client's own headers, per route:
 * the identity statement (`X-Pomerium-Jwt-Assertion`, claim headers, `${pomerium.*}` templates),
 * Kubernetes impersonation with the route's service account token, and a Google ID token for
 * Cloud Run / Cloud Functions upstreams. Built once per config generation and route.
 */
import type { Config, RouteConfig } from '../config/types.js'
import { CodedError, isPortcullisError } from '../shared/errors.js'
import { createGcpIdentityTokenSource, gcpServerlessHeaders } from './gcp-serverless.js'
import type { GcpIdentityTokenSource } from './gcp-serverless.js'
import { createIdentityHeaders, identityOptionsFromConfig } from './identity/index.js'
import type { IdentityHeaders, IdentitySession, SigningKeys } from './identity/index.js'
import { kubernetesHeaders } from './kubernetes.js'
import type { UpstreamHeaderFactory, UpstreamHeaders } from './plans.js'
import type { CheckRequest } from './types.js'

export interface UpstreamHeaderDeps {
  /** The signing keys of the current config (`signing_key`, else derived from `shared_secret`). */
  readonly keys: () => SigningKeys
  readonly gcp?: GcpIdentityTokenSource
}

/** Thrown (as a rejected promise) when an upstream credential cannot be obtained; maps to 502. */
export class UpstreamCredentialError extends CodedError {
  readonly code = 'ERR_UPSTREAM_CREDENTIAL'
  readonly publicMessage: string
  constructor(publicMessage: string, options?: { cause?: unknown }) {
    super(publicMessage, options)
    this.name = 'UpstreamCredentialError'
    this.publicMessage = publicMessage
  }
}

export function createUpstreamHeaderFactory(deps: UpstreamHeaderDeps): UpstreamHeaderFactory {
  const perConfig = new WeakMap<Config, IdentityHeaders>()
  let gcp = deps.gcp
  return (route: RouteConfig, config: Config) => {
    let identity = perConfig.get(config)
    if (!identity) {
      identity = createIdentityHeaders(identityOptionsFromConfig(config, deps.keys()))
      perConfig.set(config, identity)
    }
    const identityHeaders = identity.forRoute(route)
    const kubernetes = route.kubernetesServiceAccountToken !== undefined
    const google = route.enableGoogleCloudServerlessAuthentication
    if (google) gcp ??= createGcpIdentityTokenSource()
    const source = gcp
    return (request: CheckRequest, who: IdentitySession | undefined): UpstreamHeaders | Promise<UpstreamHeaders> => {
      const base = identityHeaders({ request, ...(who ? { session: who } : {}) })
      const set: Record<string, string> = { ...base.set }
      const remove = [...base.remove]
      let multi: Record<string, readonly string[]> | undefined
      let prefixes: string[] | undefined
      if (kubernetes) {
        const k = kubernetesHeaders(route, who ? { userId: who.userId, email: who.email, groups: who.groups } : undefined, request.headers)
        if (k) {
          Object.assign(set, k.set)
          remove.push(...k.remove)
          multi = k.setMulti
          prefixes = ['impersonate-extra-']
        }
      }
      const done = (): UpstreamHeaders => ({
        setHeaders: set,
        ...(remove.length > 0 ? { removeHeaders: remove } : {}),
        ...(multi ? { setMultiHeaders: multi } : {}),
        ...(prefixes ? { removeHeaderPrefixes: prefixes } : {}),
      })
      if (!google || !source) return done()
      return gcpServerlessHeaders(route, source).then(
        (g) => {
          if (g) Object.assign(set, g.set)
          return done()
        },
        (err: unknown) => {
          throw new UpstreamCredentialError(isPortcullisError(err) ? err.publicMessage : 'The Google identity token for this upstream could not be obtained.', { cause: err })
        },
      )
    }
  }
}
