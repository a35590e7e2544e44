/**
 * The directory service of one process (docs/directory.md): the pull sync from the provider's
 * directory API (or the built-in provider's users file), under a lease so one instance syncs,
 * and the SCIM listener. It runs where authenticate or authorize runs, like the identity manager.
 */
import type { Config } from '../config/types.js'
import type { RecordStore } from '../databroker/index.js'
import { createDirectoryProvider } from '../directory/providers/index.js'
import type { DirectoryFetch } from '../directory/http.js'
import { startScimListener } from '../directory/scim/listener.js'
import type { ScimListener } from '../directory/scim/listener.js'
import { ScimService } from '../directory/scim/service.js'
import { DirectorySync } from '../directory/sync.js'
import type { DirectorySyncStatus } from '../directory/sync.js'
import type { Logger } from '../shared/log.js'

export interface DirectoryService {
  /** The sync's state (`/status`, metrics), when a sync is configured. */
  status(): DirectorySyncStatus | undefined
  /** Resolves after the first sync round has ended (start-up waits for it briefly). */
  firstRound(): Promise<void>
  readonly scim: ScimListener | undefined
  applyConfig(config: Config): void
  close(): Promise<void>
}

interface DirectoryOptions {
  readonly store: RecordStore
  readonly logger: Logger
  /** Run the pull sync here (authenticate or authorize runs in this process). */
  readonly sync: boolean
  /** Serve SCIM here (authenticate runs in this process, and this is not a cluster worker's duplicate). */
  readonly scim: boolean
  readonly fetch?: DirectoryFetch
}

/** What identifies the sync's settings: a change restarts it. */
function syncKey(config: Config): string {
  const s = config.directory.sync
  if (s) return JSON.stringify([s.provider, s.providerUrl, s.account, s.intervalMs, s.timeoutMs])
  if (config.idp.provider === 'builtin' && config.builtinIdp.usersFile) return JSON.stringify(['builtin', config.builtinIdp.usersFile, config.directory.intervalMs])
  return ''
}

function createSync(config: Config, options: DirectoryOptions): DirectorySync | undefined {
  const provider = createDirectoryProvider(config)
  if (!provider) return undefined
  const logger = options.logger.child({ component: 'directory-sync' })
  return new DirectorySync({
    store: options.store,
    provider,
    logger,
    intervalMs: config.directory.intervalMs,
    timeoutMs: config.directory.timeoutMs,
    source: provider.name === 'builtin' ? 'file' : 'sync',
    ...(options.fetch ? { fetch: options.fetch } : {}),
  })
}

export async function setupDirectory(config: Config, options: DirectoryOptions): Promise<DirectoryService> {
  let current = config
  let key = syncKey(config)
  // The listener first: if it cannot bind, nothing has started (no sync holding the lease).
  const scimSettings = config.directory.scim
  const scim =
    options.scim && scimSettings
      ? await startScimListener({
          address: scimSettings.address,
          service: new ScimService({ store: options.store, logger: options.logger.child({ component: 'scim' }) }),
          logger: options.logger,
          tokenDigests: () => current.directory.scim?.tokenDigests ?? [],
        })
      : undefined
  let sync = options.sync ? createSync(config, options) : undefined
  let first = sync ? sync.nextRound() : Promise.resolve()
  sync?.start()
  return {
    status: () => sync?.status(),
    firstRound: () => first,
    scim,
    applyConfig(next) {
      current = next
      const nextKey = syncKey(next)
      if (!options.sync || nextKey === key) return
      key = nextKey
      const old = sync
      const replacement = createSync(next, options)
      sync = replacement
      first = replacement ? replacement.nextRound() : Promise.resolve()
      // The old sync stops (its round aborted, its lease released) before the new one starts, so
      // the new settings take effect at once rather than after the lease runs out.
      void (old?.stop() ?? Promise.resolve()).then(() => {
        if (sync === replacement) replacement?.start()
      })
    },
    async close() {
      await sync?.stop()
      await scim?.close()
    },
  }
}
