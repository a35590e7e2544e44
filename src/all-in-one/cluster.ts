/**
 * The cluster primary (`workers` > 1): opens the shared store and serves it to the workers on
 * loopback, runs the built-in provider, answers health probes and scrapes for the whole instance,
 * forks the workers (each runs `startServices`), restarts crashed ones, and passes signals on.
 */
import cluster from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { startBuiltinIdpFromConfig } from '../builtin-idp/from-config.js'
import type { Config } from '../config/types.js'
import { openRecordStore } from '../databroker/from-config.js'
import { startDatabrokerServer } from '../databroker/server.js'
import type { RecordStore } from '../databroker/types.js'
import type { HealthServer } from '../observability/health.js'
import type { MetricsServer } from '../observability/metrics-server.js'
import type { ListenerInfo } from '../proxy/server.js'
import { createLogger } from '../shared/log.js'
import type { Logger } from '../shared/log.js'
import { decodeSecret, resolveSecrets } from '../shared/secrets.js'
import { buildInfo, providerDiscoveryChecks, startHealthListener, startMetricsListener, storeCheck } from './observability.js'
import { servicePlan } from './services.js'
import { SHUTDOWN_GRACE_MS, WORKER_DATABROKER_ENV } from './start.js'
import { OpenedResources, StartupStopped, unlessStopped } from './stop.js'
import type { StopRequest } from './stop.js'

export function workerCount(config: Config): number {
  return config.workers === 0 ? availableParallelism() : Math.max(1, config.workers)
}

export interface PrimaryHooks {
  /** Every listener is up (after the `listening` lines). */
  started?(listeners: readonly ListenerInfo[]): void
  /** Start-up is over: from now on a stop is a shutdown. */
  startupDone(): void
}

/** Runs the primary until a stop; resolves with the process exit code. */
export async function runClusterPrimary(config: Config, workers: number, logger: Logger, stop: StopRequest, hooks: PrimaryHooks): Promise<number> {
  // Workers must share the process secrets; random ones are made once here and inherited.
  for (const [key, env] of [['shared_secret', 'SHARED_SECRET'], ['cookie_secret', 'COOKIE_SECRET']] as const) {
    if (decodeSecret(key === 'shared_secret' ? config.sharedSecret : config.cookieSecret) === undefined) {
      logger.warn({ setting: key }, `${key} is not set: using a random one for this run; sessions will not survive a restart`)
      process.env[env] = randomBytes(32).toString('base64')
    }
  }
  // One store for all workers: the primary opens it and serves it to them on loopback; each
  // worker keeps a synced local copy of the sessions, so requests read memory.
  const primarySecrets = resolveSecrets({ shared_secret: process.env['SHARED_SECRET'] ?? config.sharedSecret, cookie_secret: config.cookieSecret }, logger)
  const plan = servicePlan(config)
  const opened = new OpenedResources()
  let health: HealthServer | undefined
  let metricsServer: MetricsServer | undefined
  try {
    await unlessStopped(
      (async () => {
        let sharedStore: RecordStore | undefined
        stop.throwIfRequested()
        if (plan.databroker) {
          const { store } = await openRecordStore(config, logger)
          sharedStore = store
          opened.add(() => store.close())
          stop.throwIfRequested()
          const server = await startDatabrokerServer({ store, address: '127.0.0.1:0', sharedSecret: primarySecrets.sharedSecret, logger })
          opened.add(() => server.close())
          stop.throwIfRequested()
          const builtinIdp = await startBuiltinIdpFromConfig(config, primarySecrets.sharedSecret, logger)
          opened.add(() => builtinIdp?.close())
          process.env[WORKER_DATABROKER_ENV] = server.url
        }
        // The primary answers health probes and scrapes for the whole instance.
        const primaryChecks = [...(sharedStore ? [storeCheck(sharedStore)] : []), ...providerDiscoveryChecks(config, primarySecrets.sharedSecret)]
        stop.throwIfRequested()
        metricsServer = await startMetricsListener(config, logger, undefined, true)
        opened.add(() => metricsServer?.close())
        stop.throwIfRequested()
        health = await startHealthListener(config, logger, () => primaryChecks, () => ({ version: buildInfo().version, services: config.services, workers }))
        opened.add(() => health?.close())
        stop.throwIfRequested()
      })(),
      stop,
    )
  } catch (err) {
    await unlessStopped(opened.closeAll(logger), stop).catch(() => undefined)
    if (err instanceof StartupStopped) return 0
    logger.fatal({ err }, 'could not start')
    return 1
  }
  hooks.startupDone()
  const extra = [...(metricsServer ? [listenerInfo('metrics', metricsServer.url)] : []), ...(health ? [listenerInfo('health', health.url)] : [])]
  const code = await supervise(workers, logger, stop, {
    started: () => health?.markStarted(),
    announced: (listeners) => hooks.started?.(listeners),
    stopping: () => health?.markDraining(),
    extraListeners: extra,
  })
  await opened.closeAll(logger)
  return code
}

/**
 * Logs one `listening` line per listener. It is written even when `log_level` hides info lines:
 * scripts and tests that start Portcullis on port 0 learn the address from it.
 */
export function announce(logger: Logger, listeners: readonly ListenerInfo[], workers: number): void {
  const log = logger.isLevelEnabled('info') ? logger : createLogger('info')
  for (const l of listeners) log.info({ listener: l.name, url: l.url, workers }, 'listening')
}

/** The cluster primary: forks workers, reports when all listen, forwards signals, restarts crashed workers. */
interface SupervisorHooks {
  /** Every worker listens. */
  started(): void
  /** The `listening` lines are written. */
  announced(listeners: readonly ListenerInfo[]): void
  /** Shutdown begins (before the workers are told). */
  stopping(): void
  /** Listeners of the primary itself, announced with the workers' ones. */
  readonly extraListeners: readonly ListenerInfo[]
}

export function listenerInfo(name: ListenerInfo['name'], url: string): ListenerInfo {
  return { name, url, port: Number(new URL(url).port) }
}

async function supervise(count: number, logger: Logger, stop: StopRequest, hooks: SupervisorHooks): Promise<number> {
  // Let the kernel spread connections over the workers' shared socket instead of the primary
  // accepting and handing each one over (measured faster on Linux).
  cluster.schedulingPolicy = cluster.SCHED_NONE
  let ready = 0
  let stopping = false
  const fork = (): void => {
    const worker = cluster.fork()
    worker.on('message', (m: { type?: string; listeners?: ListenerInfo[] }) => {
      if (m.type !== 'listening' || !m.listeners || stopping) return
      ready++
      if (ready === count) {
        hooks.started()
        const listeners = [...m.listeners, ...hooks.extraListeners]
        announce(logger, listeners, count)
        hooks.announced(listeners)
      }
    })
  }
  for (let i = 0; i < count; i++) fork()
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return
    logger.error({ pid: worker.process.pid, code, signal }, 'worker exited; starting a new one')
    fork()
  })
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP')
  })
  const signal = await stop.requested
  stopping = true
  hooks.stopping()
  logger.info({ signal }, 'shutting down workers')
  // A signal rather than a message: a worker still loading has no message handler yet, and
  // Node's default action for SIGTERM ends it at once; a started one drains and exits.
  const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined)
  await new Promise<void>((resolve) => {
    let left = workers.length
    if (left === 0) resolve()
    const timer = setTimeout(() => {
      for (const w of workers) w.process.kill('SIGKILL')
    }, SHUTDOWN_GRACE_MS + 5000)
    for (const w of workers) {
      w.once('exit', () => {
        if (--left === 0) {
          clearTimeout(timer)
          resolve()
        }
      })
      w.process.kill('SIGTERM')
    }
  })
  return 0
}
