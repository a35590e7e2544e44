/**
 * `portcullis serve`: loads the config, starts the services (src/all-in-one/start.ts), follows
 * config changes, and shuts down cleanly on SIGTERM/SIGINT. With `workers` > 1 the data plane
 * runs in that many node:cluster workers sharing the listening socket; the primary only
 * supervises (src/all-in-one/cluster.ts).
 */
import cluster from 'node:cluster'
import { announce, listenerInfo, runClusterPrimary, workerCount } from '../all-in-one/cluster.js'
import { buildInfo, createMetrics, startHealthListener, startMetricsListener } from '../all-in-one/observability.js'
import { servicePlan } from '../all-in-one/services.js'
import { startServices } from '../all-in-one/start.js'
import type { RunningServer } from '../all-in-one/start.js'
import { processStopRequest, StartupStopped, unlessStopped } from '../all-in-one/stop.js'
import { ConfigSource, formatIssue } from '../config/index.js'
import type { HealthServer } from '../observability/health.js'
import type { MetricsServer } from '../observability/metrics-server.js'
import type { ListenerInfo } from '../proxy/server.js'
import { createLogger, flushLogs } from '../shared/log.js'

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
    return runClusterPrimary(config, workers, logger, stop, { ...hooks, startupDone: () => (starting = false) })
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
      health = await startHealthListener(config, logger, () => running.readiness(), () => ({ version: buildInfo().version, services: source.current().services, workers: 1, ...running.status() }))
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

