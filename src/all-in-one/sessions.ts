/**
 * The session layer of one process: the sign-in settings of the current config generation, the
 * session store (with a synced local copy when the store is remote or shared), the identity
 * providers, the on-demand refresher and, where authenticate or authorize runs, the identity
 * manager. Every service of the process reads sessions through this one value.
 */
import type { Config } from '../config/types.js'
import type { RecordStore } from '../databroker/index.js'
import type { IdentityProvider } from '../idp/provider.js'
import { startIdentityManager } from '../session/identity-manager.js'
import type { IdentityManager } from '../session/identity-manager.js'
import { ProviderRegistry } from '../session/provider-registry.js'
import type { ProviderFactory } from '../session/provider-registry.js'
import { SessionRefresher } from '../session/refresher.js'
import { SessionCache } from '../session/session-cache.js'
import { SessionStore, sessionTokenKey } from '../session/session-store.js'
import { buildAuthSettings } from '../session/settings.js'
import { DeviceStore } from '../session/devices.js'
import { DirectoryCopy } from '../session/directory.js'
import type { AuthSettings } from '../session/settings.js'
import type { Logger } from '../shared/log.js'
import type { Secrets } from '../shared/secrets.js'

export interface SessionsOptions {
  readonly store: RecordStore
  readonly logger: Logger
  readonly secrets: Secrets
  readonly providerFactory: ProviderFactory
  /**
   * Keep a synced local copy of the sessions (for stores in another process or on PostgreSQL, so
   * the request path reads memory). A local memory or file store is read directly.
   */
  readonly synced: boolean
  /** Client secret for `idp_provider: builtin` without `idp_client_secret`. */
  readonly builtinClientSecret?: string | undefined
  /**
   * Run the identity manager (token refresh, UserInfo, expiry, under a lease across instances).
   * Processes that run authenticate or authorize do; a proxy-only process does not.
   */
  readonly identityManager: boolean
}

export interface Sessions {
  settings(): AuthSettings
  readonly sessions: SessionStore
  /** WebAuthn device credentials and enrollment links (docs/devices.md). */
  readonly devices: DeviceStore
  /** Directory users and groups (docs/directory.md), a synced local copy. */
  readonly directory: DirectoryCopy
  readonly providers: ProviderRegistry
  /** The identity provider of an `idp_id` (readiness checks use it to read discovery). */
  providerFor(idpId: string): IdentityProvider | undefined
  readonly refresher: SessionRefresher
  readonly identityManager: IdentityManager | undefined
  applyConfig(config: Config): void
  /** Stops the background work (before the store closes). */
  close(): Promise<void>
}

export function setupSessions(config: Config, options: SessionsOptions): Sessions {
  const settingsOptions = options.builtinClientSecret !== undefined ? { builtinClientSecret: options.builtinClientSecret } : {}
  let settings = buildAuthSettings(config, settingsOptions)
  const { store, logger } = options
  const cache = options.synced ? new SessionCache(store, logger) : undefined
  cache?.start()
  const sessions = new SessionStore(store, { lifetimeMs: settings.sessionLifetimeMs, tokenKey: sessionTokenKey(options.secrets.sharedSecret), ...(cache ? { cache } : {}) })
  const providers = new ProviderRegistry(options.providerFactory)
  const providerFor = (idpId: string): IdentityProvider | undefined => providers.get(settings, idpId)
  // The identity manager is the one refresher (under a lease across instances); see refresher.ts.
  const refresher = new SessionRefresher({ sessions, providerFor, logger, refreshOnUse: false })
  let directoryOn = directoryEnabled(config)
  // Sessions of the global provider (and of per-route clients of the same provider) read their
  // groups from the directory once a directory source is configured.
  const directory = new DirectoryCopy(store, logger, {
    manages: (idpId) => {
      if (!directoryOn) return false
      const global = settings.defaultProvider
      const p = settings.providers.get(idpId)
      return global !== undefined && p !== undefined && p.provider === global.provider && p.url === global.url
    },
  })
  // The copy follows the directory records only once a directory is configured (no sync streams otherwise).
  if (directoryOn) directory.start()
  const identityManager = options.identityManager
    ? startIdentityManager({ store, sessions, providerFor, logger: logger.child({ component: 'identity-manager' }) })
    : undefined
  return {
    settings: () => settings,
    sessions,
    devices: new DeviceStore(store),
    directory,
    providers,
    providerFor,
    refresher,
    identityManager,
    applyConfig(next) {
      settings = buildAuthSettings(next, settingsOptions)
      directoryOn = directoryEnabled(next)
      if (directoryOn) directory.start()
    },
    async close() {
      await directory.stop()
      await identityManager?.stop()
      await cache?.stop()
    },
  }
}

/** Whether a directory source is configured: pull sync, SCIM, or the built-in provider's users file. */
export function directoryEnabled(config: Config): boolean {
  return config.directory.sync !== undefined || config.directory.scim !== undefined || config.idp.provider === 'builtin'
}
