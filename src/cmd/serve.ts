/**
 * `portcullis serve`: loads the config, starts the services, follows config changes, and shuts
 * down cleanly on SIGTERM/SIGINT. With `workers` > 1 the data plane runs in that many
 * node:cluster workers sharing the listening socket; the primary only supervises.
 */
import cluster from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { createAuthentication } from '../authenticate/runtime.js'
import { builtinClientSecret, startBuiltinIdpFromConfig } from '../builtin-idp/from-config.js'
import { openRecordStore } from '../databroker/from-config.js'
import { createRemoteRecordStore } from '../databroker/remote.js'
import { databrokerRoutes, internalErrorAnswer, startDatabrokerServer } from '../databroker/server.js'
import { createAuthenticateForwarder } from '../authenticate/forwarder.js'
import type { AuthenticateForwarder } from '../authenticate/forwarder.js'
import { authorizeRoutes, createRemoteAuthorizer } from '../authorize/remote.js'
import type { RemoteAuthorizer } from '../authorize/remote.js'
import { startInternalServer } from '../internal/index.js'
import type { InternalRoute } from '../internal/index.js'
import type { RecordStore } from '../databroker/types.js'
import { servicePlan } from './services.js'
import { buildInfo, configChecksum, createMetrics, providerDiscoveryChecks, startHealthListener, startMetricsListener, storeCheck } from './observability.js'
import type { HealthServer, ReadinessCheck } from '../observability/health.js'
import type { MetricsServer } from '../observability/metrics-server.js'
import { instrumentStore } from '../observability/instrumented-store.js'
import { createTracing } from '../observability/tracing.js'
import type { IdpFetch } from '../idp/oidc.js'
import type { PortcullisMetrics } from '../observability/metrics.js'
import { createProviderFactory } from '../authenticate/provider-factory.js'
import { ConfigSource, formatIssue } from '../config/index.js'
import type { Config } from '../config/types.js'
import { faultInjectorFromEnv } from '../proxy/fault.js'
import { ProxyServer } from '../proxy/server.js'
import type { ListenerInfo } from '../proxy/server.js'
import { createLogger, flushLogs, toPinoLevel } from '../shared/log.js'
import { OpenedResources, processStopRequest, StartupStopped, unlessStopped } from './stop.js'
import type { StopRequest } from './stop.js'
import type { Logger } from '../shared/log.js'
import { decodeSecret, resolveSecrets } from '../shared/secrets.js'

/** Tells cluster workers where their primary serves the shared databroker. */
const WORKER_DATABROKER_ENV = 'PORTCULLIS_WORKER_DATABROKER_URL'

/** How long SIGTERM waits for requests in flight before closing what is left. */
export const SHUTDOWN_GRACE_MS = 10_000

export interface RunningServer {
  readonly listeners: readonly ListenerInfo[]
  /** Undefined for a databroker-only process. */
  readonly proxy: ProxyServer | undefined
  /** What `/readyz` checks: the session store answers, each identity provider's discovery can be read. */
  readiness(): ReadinessCheck[]
  close(): Promise<void>
}

export interface ServiceOptions {
  /** Record metrics (when `metrics_address` is set). */
  readonly metrics?: PortcullisMetrics | undefined
  /** A stop during start-up: checked before each listener opens (`StartupStopped` is thrown). */
  readonly stop?: StopRequest | undefined
}

export function workerCount(config: Config): number {
  return config.workers === 0 ? availableParallelism() : Math.max(1, config.workers)
}

/** Whether sign-in is configured: sessions then live in this process's memory store. */
function signInConfigured(config: Config): boolean {
  const idp = config.raw['idp_provider']
  return typeof idp === 'string' && idp !== '' && idp !== 'hosted'
}

/**
 * Starts the services in this process for an already loaded config source. If start-up fails or
 * is stopped part-way, what it had opened is closed before the error is thrown.
 */
export async function startServices(source: ConfigSource, logger: Logger, options: ServiceOptions = {}): Promise<RunningServer> {
  const opened = new OpenedResources()
  try {
    return await startServicesTracked(source, logger, options, opened)
  } catch (err) {
    await opened.closeAll(logger)
    throw err
  }
}

async function startServicesTracked(source: ConfigSource, logger: Logger, options: ServiceOptions, opened: OpenedResources): Promise<RunningServer> {
  const stopCheck = (): void => options.stop?.throwIfRequested()
  const config = source.current()
  const metrics = options.metrics
  const secrets = resolveSecrets(config.raw, logger)
  // With workers, the primary runs the built-in provider and the databroker; workers use them.
  const workerDatabroker = cluster.isWorker ? process.env[WORKER_DATABROKER_ENV] : undefined
  const configured = servicePlan(config)
  const plan = workerDatabroker !== undefined ? { ...configured, databroker: false, databrokerUrls: [workerDatabroker], grpcAddress: undefined } : configured
  stopCheck()
  const builtinIdp = workerDatabroker === undefined && plan.authenticate ? await startBuiltinIdpFromConfig(config, secrets.sharedSecret, logger) : undefined
  opened.add(() => builtinIdp?.close())
  stopCheck()
  const ca = typeof config.raw['certificate_authority'] === 'string' ? config.raw['certificate_authority'] : undefined
  const overrideName = typeof config.raw['override_certificate_name'] === 'string' ? config.raw['override_certificate_name'] : undefined
  // `grpc_client_timeout`: one internal call on one URL (durations are milliseconds once loaded).
  const timeoutMs = typeof config.raw['grpc_client_timeout'] === 'number' && config.raw['grpc_client_timeout'] > 0 ? config.raw['grpc_client_timeout'] : undefined
  const clientTls = ca || overrideName ? { ...(ca ? { ca } : {}), ...(overrideName ? { serverName: overrideName } : {}) } : undefined
  let store: RecordStore
  let storageType = 'remote'
  if (plan.databroker) {
    const local = await openRecordStore(config, logger)
    store = local.store
    storageType = local.type
  } else {
    if (plan.databrokerUrls.length === 0) throw new Error('services without databroker need databroker_service_url (or databroker_service_urls / databroker_internal_service_url)')
    store = createRemoteRecordStore({ urls: plan.databrokerUrls, sharedSecret: secrets.sharedSecret, logger, tls: clientTls, timeoutMs })
  }
  const rawStore = store
  opened.add(() => rawStore.close())
  stopCheck()
  const tracing = createTracing(config, logger, plan.proxy ? 'proxy' : plan.authenticate ? 'authenticate' : plan.authorize ? 'authorize' : 'databroker')
  opened.add(() => tracing?.shutdown())
  if (metrics || tracing) store = instrumentStore(store, storageType, { metrics, tracing })
  if (storageType === 'memory' && signInConfigured(config)) {
    logger.warn('databroker storage is memory: sessions end at every restart and are not shared with other instances (use databroker_storage_connection_string: postgres://... for several instances)')
  }
  const runsAuth = plan.proxy || plan.authenticate || plan.authorize
  const auth = runsAuth
    ? createAuthentication(config, {
        store,
        syncedSessions: storageType !== 'memory' && storageType !== 'file',
        logger,
        secrets,
        providerFactory: createProviderFactory(tracing ? (tracing.tracedFetch(fetch) as IdpFetch) : undefined),
        builtinClientSecret: builtinClientSecret(config, secrets.sharedSecret),
      })
    : undefined
  opened.add(() => auth?.close())
  if (auth && metrics) metrics.identityManager(() => auth.identityManager.metrics())
  metrics?.configLoaded(true, { routes: config.routes.length, checksum: configChecksum(config) })
  source.onReloadFailed(() => metrics?.configLoaded(false))
  let current = config
  // The internal API of this process: its databroker and, when the proxy is elsewhere, its authorize service.
  const internalRoutes = new Map<string, InternalRoute>([
    ...(plan.databroker ? databrokerRoutes(store) : []),
    ...(plan.authorize && auth && !plan.proxy ? authorizeRoutes({ authorizer: auth.authorizer, routes: () => current.routes }) : []),
  ])
  const certificate = config.certificates[0]
  stopCheck()
  const internal =
    plan.grpcAddress !== undefined
      ? await startInternalServer({
          address: plan.grpcAddress,
          sharedSecret: secrets.sharedSecret,
          logger,
          routes: internalRoutes,
          mapError: internalErrorAnswer,
          onCall: metrics ? (path, status, ms) => metrics.internalCall(path, status, ms) : undefined,
          ...(!plan.grpcInsecure && certificate ? { tls: { cert: certificate.cert, key: certificate.key } } : {}),
        })
      : undefined
  opened.add(() => internal?.close())
  const grpcListener = internal ? [{ name: 'grpc' as const, url: internal.url, port: internal.port }] : []

  // An authenticate-only process serves its host and nothing else: no routes.
  const proxyConfig = (c: Config): Config => (plan.proxy ? c : { ...c, routes: [] })
  let proxy: ProxyServer | undefined
  let remoteAuthorizer: RemoteAuthorizer | undefined
  let forwarder: AuthenticateForwarder | undefined
  if (auth && (plan.proxy || plan.authenticate)) {
    if (plan.proxy && !plan.authorize) {
      if (plan.authorizeUrls.length === 0) throw new Error('services with proxy but without authorize need authorize_service_url (or authorize_service_urls / authorize_internal_service_url)')
      remoteAuthorizer = createRemoteAuthorizer({ urls: plan.authorizeUrls, sharedSecret: secrets.sharedSecret, logger, tls: clientTls, timeoutMs })
      opened.add(() => remoteAuthorizer?.close())
    }
    if (plan.proxy && !plan.authenticate && plan.authenticateInternalUrl !== undefined) {
      forwarder = createAuthenticateForwarder({ url: plan.authenticateInternalUrl, authenticateHost: auth.settings().authenticateHost, ca, serverName: overrideName, logger })
      opened.add(() => forwarder?.close())
    }
    const endpoints = auth.endpointsFor({
      authenticateHost: plan.authenticate ? 'local' : forwarder ? (request) => (forwarder as AuthenticateForwarder).handle(request) : 'none',
      routeHosts: plan.proxy,
    })
    // Read once here; only tests set it (src/proxy/fault.ts).
    const faults = faultInjectorFromEnv(process.env, logger)
    proxy = new ProxyServer(proxyConfig(config), { authorizer: remoteAuthorizer ?? auth.authorizer, endpoints, logger, metrics, tracing, faults })
  }
  stopCheck()
  opened.add(() => proxy?.close(0))
  const listeners = [...((await proxy?.listen()) ?? []), ...grpcListener]
  stopCheck()
  source.onChange((next) => {
    current = next
    logger.level = toPinoLevel(next.logLevel)
    auth?.applyConfig(next)
    proxy?.applyConfig(proxyConfig(next))
    metrics?.configLoaded(true, { routes: next.routes.length, checksum: configChecksum(next) })
    logger.info({ routes: next.routes.length }, 'config reloaded')
  })
  source.start()
  const storeReady = storeCheck(store)
  return {
    listeners,
    proxy,
    readiness: () => [
      storeReady,
      ...(auth && (plan.authenticate || plan.proxy)
        ? [...auth.settings().providers.keys()].map((id) => ({
            name: `idp:${id}`,
            // Reads (and caches) the provider's discovery document; a failed read is retried next time.
            check: async () => {
              await auth.providerFor(id)?.needsPkce()
            },
          }))
        : []),
    ],
    async close() {
      source.stop()
      await proxy?.close(SHUTDOWN_GRACE_MS)
      await builtinIdp?.close()
      await auth?.close()
      remoteAuthorizer?.close()
      await forwarder?.close()
      await internal?.close()
      await store.close()
      await tracing?.shutdown()
    },
  }
}

/** What a caller of `serve` (the demo) hears about. */
export interface ServeHooks {
  /** Every listener is up (after the `listening` lines). */
  started?(listeners: readonly ListenerInfo[]): void
}

/** Entry point of `portcullis serve`; resolves with the process exit code once shut down. */
export async function serve(configFile: string | undefined, hooks: ServeHooks = {}): Promise<number> {
  // Heard from the first moment: a stop during start-up ends it instead of waiting for it.
  const stop = processStopRequest()
  // A SIGHUP before the config watcher is installed (service managers reload early) must not end
  // the process, which is Node's default; the watcher adds its own handler once started.
  process.on('SIGHUP', () => undefined)
  const bootLogger = createLogger(process.env['LOG_LEVEL'] ?? 'info')
  const source = new ConfigSource({ file: configFile, env: process.env, logger: bootLogger })
  const { config, issues } = source.load()
  for (const issue of issues) {
    if (issue.severity === 'warning' && !cluster.isWorker) process.stderr.write(`${formatIssue(issue)}\n`)
  }
  if (!config) {
    for (const issue of issues) if (issue.severity === 'error') process.stderr.write(`${formatIssue(issue)}\n`)
    process.stderr.write('portcullis: the configuration is invalid; nothing was started\n')
    return 1
  }
  const logger = createLogger(config.logLevel)
  // Until start-up is over, a stop is logged here; afterwards by the running server's shutdown.
  let starting = true
  void stop.requested.then((signal) => {
    if (starting) logger.info({ signal, during: 'start-up' }, 'shutting down')
  })
  // A bug must not leave a half-working process behind: log it as JSON and exit, so that the
  // cluster primary (or the service manager) starts a fresh one.
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception; exiting')
    flushLogs()
    process.exit(1)
  })
  let workers = workerCount(config)
  if (workers > 1 && !servicePlan(config).proxy) workers = 1
  if (workers > 1 && cluster.isPrimary) {
    // Workers must share the process secrets; random ones are made once here and inherited.
    for (const [key, env] of [['shared_secret', 'SHARED_SECRET'], ['cookie_secret', 'COOKIE_SECRET']] as const) {
      if (decodeSecret(config.raw[key]) === undefined) {
        logger.warn({ setting: key }, `${key} is not set: using a random one for this run; sessions will not survive a restart`)
        process.env[env] = randomBytes(32).toString('base64')
      }
    }
    // One store for all workers: the primary opens it and serves it to them on loopback; each
    // worker keeps a synced local copy of the sessions, so requests read memory.
    const primarySecrets = resolveSecrets({ ...config.raw, shared_secret: process.env['SHARED_SECRET'] ?? config.raw['shared_secret'] }, logger)
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
    starting = false
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

  let server: RunningServer
  let health: HealthServer | undefined
  let metricsServer: MetricsServer | undefined
  const metrics = createMetrics(config)
  try {
    server = await unlessStopped(startServices(source, logger, { metrics, stop }), stop)
  } catch (err) {
    if (err instanceof StartupStopped) return 0
    logger.fatal({ err }, 'could not start')
    return 1
  }
  if (!cluster.isWorker) {
    try {
      stop.throwIfRequested()
      metricsServer = await startMetricsListener(config, logger, metrics, false)
      stop.throwIfRequested()
      const running = server
      health = await startHealthListener(config, logger, () => running.readiness(), () => ({ version: buildInfo().version, services: source.current().services, workers: 1 }))
      stop.throwIfRequested()
    } catch (err) {
      if (!(err instanceof StartupStopped)) logger.fatal({ err }, 'could not start')
      await unlessStopped(
        (async () => {
          await health?.close()
          await metricsServer?.close()
          await server.close()
        })(),
        stop,
      ).catch(() => undefined)
      return err instanceof StartupStopped ? 0 : 1
    }
  }
  starting = false
  const extra = [...(metricsServer ? [listenerInfo('metrics', metricsServer.url)] : []), ...(health ? [listenerInfo('health', health.url)] : [])]
  health?.markStarted()
  if (cluster.isWorker) process.send?.({ type: 'listening', listeners: server.listeners })
  else {
    announce(logger, [...server.listeners, ...extra], 1)
    hooks.started?.([...server.listeners, ...extra])
  }
  const signal = await stop.requested
  logger.info({ signal }, 'shutting down')
  // Not ready first, so that load balancers stop sending; then the connections drain.
  health?.markDraining()
  try {
    await server.close()
    await metricsServer?.close()
    await health?.close()
    return 0
  } catch (err) {
    logger.error({ err }, 'shutdown failed')
    return 1
  }
}

/**
 * Logs one `listening` line per listener. It is written even when `log_level` hides info lines:
 * scripts and tests that start Portcullis on port 0 learn the address from it.
 */
function announce(logger: Logger, listeners: readonly ListenerInfo[], workers: number): void {
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

function listenerInfo(name: ListenerInfo['name'], url: string): ListenerInfo {
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
