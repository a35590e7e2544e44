/**
 * The composition root: starts the services this process runs (`services`, Pomerium docs: All-in-one vs split) for an
 * already loaded config source, wires them together, and follows config changes. Each service is
 * set up by its own `setupX`; only this module knows them all (see docs/architecture.md).
 */
import cluster from 'node:cluster'
import { createAuthenticateForwarder } from '../authenticate/forwarder.js'
import type { AuthenticateForwarder } from '../authenticate/forwarder.js'
import { createRemoteAuthorizer } from '../authorize/remote.js'
import type { RemoteAuthorizer } from '../authorize/remote.js'
import { builtinClientSecret, startBuiltinIdpFromConfig } from '../builtin-idp/from-config.js'
import type { ConfigSource } from '../config/index.js'
import type { Config } from '../config/types.js'
import { internalErrorAnswer } from '../databroker/server.js'
import type { RecordStore } from '../databroker/types.js'
import type { IdpFetch } from '../idp/oidc.js'
import { startInternalServer } from '../internal/index.js'
import type { InternalRoute } from '../internal/index.js'
import type { ReadinessCheck } from '../observability/health.js'
import { instrumentStore } from '../observability/instrumented-store.js'
import type { PortcullisMetrics } from '../observability/metrics.js'
import { createTracing } from '../observability/tracing.js'
import type { ListenerInfo, ProxyServer } from '../proxy/server.js'
import { createProviderFactory } from '../session/provider-factory.js'
import { toPinoLevel } from '../shared/log.js'
import type { Logger } from '../shared/log.js'
import { resolveSecrets } from '../shared/secrets.js'
import { OpenedResources } from './stop.js'
import type { StopRequest } from './stop.js'
import { setupAuthenticate } from './authenticate.js'
import { setupAuthorize } from './authorize.js'
import { openStorage, setupDatabroker } from './databroker.js'
import { configChecksum, storeCheck } from './observability.js'
import { setupProxy } from './proxy.js'
import type { ProxyService } from './proxy.js'
import { servicePlan } from './services.js'
import { directoryEnabled, setupSessions } from './sessions.js'
import { setupDirectory } from './directory.js'
import { setupSigningKeys } from './signing-keys.js'

/** Tells cluster workers where their primary serves the shared databroker. */
export const WORKER_DATABROKER_ENV = 'PORTCULLIS_WORKER_DATABROKER_URL'

/** How long SIGTERM waits for requests in flight before closing what is left. */
export const SHUTDOWN_GRACE_MS = 10_000

export interface RunningServer {
  readonly listeners: readonly ListenerInfo[]
  /** Undefined for a databroker-only process. */
  readonly proxy: ProxyServer | undefined
  /** What `/readyz` checks: the session store answers, each identity provider's discovery can be read. */
  readiness(): ReadinessCheck[]
  /** Extra fields of `/status` (the directory sync's state). */
  status(): Record<string, unknown>
  close(): Promise<void>
}

export interface ServiceOptions {
  /** Record metrics (when `metrics_address` is set). */
  readonly metrics?: PortcullisMetrics | undefined
  /** A stop during start-up: checked before each listener opens (`StartupStopped` is thrown). */
  readonly stop?: StopRequest | undefined
}

/** How long start-up waits for the first directory sync before serving anyway. */
const DIRECTORY_START_WAIT_MS = 5_000

/** Whether sign-in is configured: sessions then live in this process's memory store. */
function signInConfigured(config: Config): boolean {
  const idp = config.idp.provider
  return idp !== undefined && idp !== '' && idp !== 'hosted'
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
  const secrets = resolveSecrets({ shared_secret: config.sharedSecret, cookie_secret: config.cookieSecret }, logger)
  // With workers, the primary runs the built-in provider and the databroker; workers use them.
  const workerDatabroker = cluster.isWorker ? process.env[WORKER_DATABROKER_ENV] : undefined
  const configured = servicePlan(config)
  const plan = workerDatabroker !== undefined ? { ...configured, databroker: false, databrokerUrls: [workerDatabroker], grpcAddress: undefined } : configured
  stopCheck()
  const builtinIdp = workerDatabroker === undefined && plan.authenticate ? await startBuiltinIdpFromConfig(config, secrets.sharedSecret, logger) : undefined
  opened.add(() => builtinIdp?.close())
  stopCheck()
  const ca = config.certificateAuthority
  const overrideName = config.overrideCertificateName
  // `grpc_client_timeout`: one internal call on one URL (0: no limit).
  const timeoutMs = config.grpcClientTimeoutMs > 0 ? config.grpcClientTimeoutMs : undefined
  const clientTls = ca || overrideName ? { ...(ca ? { ca } : {}), ...(overrideName ? { serverName: overrideName } : {}) } : undefined
  const storage = await openStorage(config, plan, logger, { sharedSecret: secrets.sharedSecret, tls: clientTls, timeoutMs })
  const rawStore = storage.store
  opened.add(() => rawStore.close())
  stopCheck()
  const tracing = createTracing(config, logger, plan.proxy ? 'proxy' : plan.authenticate ? 'authenticate' : plan.authorize ? 'authorize' : 'databroker')
  opened.add(() => tracing?.shutdown())
  const store: RecordStore = metrics || tracing ? instrumentStore(rawStore, storage.type, { metrics, tracing }) : rawStore
  if (storage.type === 'memory' && signInConfigured(config)) {
    logger.warn('databroker storage is memory: sessions end at every restart and are not shared with other instances (use databroker_storage_connection_string: postgres://... for several instances)')
  }

  // Sessions, signing keys and policy plans serve every service but the databroker.
  const runsAuth = plan.proxy || plan.authenticate || plan.authorize
  const sessions = runsAuth
    ? setupSessions(config, {
        store,
        synced: storage.type !== 'memory' && storage.type !== 'file',
        logger,
        secrets,
        providerFactory: createProviderFactory(tracing ? (tracing.tracedFetch(fetch) as IdpFetch) : undefined),
        builtinClientSecret: builtinClientSecret(config, secrets.sharedSecret),
        identityManager: plan.authenticate || plan.authorize,
      })
    : undefined
  opened.add(() => sessions?.close())
  const identityManager = sessions?.identityManager
  if (identityManager && metrics) metrics.identityManager(() => identityManager.metrics())
  // Directory sync and SCIM (docs/directory.md) run where authenticate or authorize does.
  const directory = sessions && (plan.authenticate || plan.authorize) ? await setupDirectory(config, { store, logger, sync: true, scim: plan.authenticate }) : undefined
  opened.add(() => directory?.close())
  if (directory && metrics) metrics.directorySync(() => directory.status())
  if (sessions && directoryEnabled(config)) {
    // Group rules read the directory copy: give the first sync and the copy a moment before serving.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all([directory?.firstRound(), sessions.directory.whenReady()]),
      // Not unref'd: the wait itself must keep the process alive when nothing else does yet.
      new Promise((resolve) => (timer = setTimeout(resolve, DIRECTORY_START_WAIT_MS))),
    ]).finally(() => clearTimeout(timer))
  }
  const keys = sessions ? setupSigningKeys(config, secrets) : undefined
  // The plans also feed the routes portal of a proxy whose authorize service runs elsewhere.
  const authorize = sessions && keys ? setupAuthorize(config, { sessions, keys, secrets, logger }) : undefined
  const authenticate =
    sessions && keys && authorize && (plan.proxy || plan.authenticate)
      ? setupAuthenticate(config, { sessions, keys, plans: () => authorize.plans(), secrets, logger })
      : undefined
  metrics?.configLoaded(true, { routes: config.routes.length, checksum: configChecksum(config) })
  source.onReloadFailed(() => metrics?.configLoaded(false))
  let current = config

  // The internal API of this process: its databroker and, when the proxy is elsewhere, its authorize service.
  const internalRoutes = new Map<string, InternalRoute>([
    ...(plan.databroker ? setupDatabroker(store) : []),
    ...(plan.authorize && authorize && !plan.proxy ? authorize.internalRoutes(() => current.routes) : []),
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
  const scimListener = directory?.scim ? [{ name: 'scim' as const, url: `${directory.scim.url}/scim/v2`, port: Number(new URL(directory.scim.url).port) }] : []

  let proxy: ProxyService | undefined
  let remoteAuthorizer: RemoteAuthorizer | undefined
  let forwarder: AuthenticateForwarder | undefined
  if (sessions && authorize && authenticate) {
    if (plan.proxy && !plan.authorize) {
      if (plan.authorizeUrls.length === 0) throw new Error('services with proxy but without authorize need authorize_service_url (or authorize_service_urls / authorize_internal_service_url)')
      remoteAuthorizer = createRemoteAuthorizer({ urls: plan.authorizeUrls, sharedSecret: secrets.sharedSecret, logger, tls: clientTls, timeoutMs })
      opened.add(() => remoteAuthorizer?.close())
    }
    if (plan.proxy && !plan.authenticate && plan.authenticateInternalUrl !== undefined) {
      forwarder = createAuthenticateForwarder({ url: plan.authenticateInternalUrl, authenticateHost: sessions.settings().authenticateHost, ca, serverName: overrideName, logger })
      opened.add(() => forwarder?.close())
    }
    const via = forwarder
    const endpoints = authenticate.endpointsFor({
      authenticateHost: plan.authenticate ? 'local' : via ? (request) => via.handle(request) : 'none',
      routeHosts: plan.proxy,
    })
    proxy = setupProxy(config, { authorizer: remoteAuthorizer ?? authorize.authorizer, endpoints, logger, metrics, tracing, routes: plan.proxy })
  }
  stopCheck()
  const proxyServer = proxy?.server
  opened.add(() => proxyServer?.close(0))
  const listeners = [...((await proxyServer?.listen()) ?? []), ...grpcListener, ...scimListener]
  stopCheck()
  source.onChange((next) => {
    current = next
    logger.level = toPinoLevel(next.logLevel)
    sessions?.applyConfig(next)
    directory?.applyConfig(next)
    keys?.applyConfig(next)
    authorize?.applyConfig(next)
    authenticate?.applyConfig(next)
    proxy?.applyConfig(next)
    metrics?.configLoaded(true, { routes: next.routes.length, checksum: configChecksum(next) })
    logger.info({ routes: next.routes.length }, 'config reloaded')
  })
  source.start()
  const storeReady = storeCheck(store)
  return {
    listeners,
    proxy: proxyServer,
    readiness: () => [
      storeReady,
      ...(sessions && (plan.authenticate || plan.proxy)
        ? [...sessions.settings().providers.keys()].map((id) => ({
            name: `idp:${id}`,
            // Reads (and caches) the provider's discovery document; a failed read is retried next time.
            check: async () => {
              await sessions.providerFor(id)?.needsPkce()
            },
          }))
        : []),
    ],
    status: () => {
      const d = directory?.status()
      return d
        ? {
            directory: {
              provider: d.provider,
              leader: d.leader,
              users: d.users,
              groups: d.groups,
              last_success: d.lastSuccessAt === undefined ? null : new Date(d.lastSuccessAt).toISOString(),
              last_error: d.lastError ?? null,
              stale: d.stale,
            },
          }
        : {}
    },
    async close() {
      source.stop()
      await proxyServer?.close(SHUTDOWN_GRACE_MS)
      await directory?.close()
      await builtinIdp?.close()
      await sessions?.close()
      remoteAuthorizer?.close()
      await forwarder?.close()
      await internal?.close()
      await store.close()
      await tracing?.shutdown()
    },
  }
}
