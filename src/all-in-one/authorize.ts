/**
 * The authorize service of one process: the compiled policy plans of the config generation, the
 * identity headers each allowed request carries, and the authorizer that answers with data
 * (`CheckResult`). In split mode the same authorizer answers the internal API.
 */
import { buildAuthorizePlans } from '../authorize/plans.js'
import type { AuthorizePlans, UpstreamHeaderFactory } from '../authorize/plans.js'
import { createPolicyAuthorizer } from '../authorize/policy-authorizer.js'
import { authorizeRoutes } from '../authorize/remote.js'
import type { Authorizer } from '../authorize/types.js'
import { createUpstreamHeaderFactory } from '../authorize/upstream-headers.js'
import type { Config } from '../config/types.js'
import type { InternalRoute } from '../internal/index.js'
import { BearerSessions } from '../session/bearer-sessions.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'
import type { Sessions } from './sessions.js'
import type { SigningKeySource } from './signing-keys.js'

export interface AuthorizeOptions {
  readonly sessions: Sessions
  readonly keys: SigningKeySource
  readonly secrets: Secrets
  readonly logger: Logger
  /** Identity headers (JWT assertion, claim headers, Kubernetes, Google) per route; default: built from the config. */
  readonly upstreamHeaders?: UpstreamHeaderFactory
}

export interface AuthorizeService {
  readonly authorizer: Authorizer
  /** The compiled plans of the current generation (the routes portal shows what a user may open). */
  plans(): AuthorizePlans
  /** The internal API routes of the authorize service, for a proxy in another process. */
  internalRoutes(routes: () => Config['routes']): Array<[string, InternalRoute]>
  applyConfig(config: Config): void
}

export function setupAuthorize(config: Config, options: AuthorizeOptions): AuthorizeService {
  const { sessions, logger } = options
  const headers = options.upstreamHeaders ?? createUpstreamHeaderFactory({ keys: () => options.keys.keys() })
  const plansFor = (c: Config): AuthorizePlans => buildAuthorizePlans(c, { logger, headers })
  let plans = plansFor(config)
  const authorizer = createPolicyAuthorizer({
    settings: () => sessions.settings(),
    secrets: options.secrets,
    sessions: sessions.sessions,
    devices: sessions.devices,
    directory: sessions.directory,
    refresher: sessions.refresher,
    logger,
    plans: () => plans,
    bearer: new BearerSessions({ sessions: sessions.sessions, providerFor: (id) => sessions.providerFor(id), logger, maxLifetimeMs: () => sessions.settings().sessionLifetimeMs }),
  })
  return {
    authorizer,
    plans: () => plans,
    internalRoutes: (routes) => [...authorizeRoutes({ authorizer, routes })],
    applyConfig(next) {
      plans = plansFor(next)
    },
  }
}
