/**
 * The operator-facing listeners of `portcullis serve`: metrics (`metrics_address`) and health
 * probes (`health_check_addr`), built from the config. With workers, the primary serves both:
 * metrics are gathered from every worker (prom-client's cluster aggregation), and the probes
 * answer for the whole instance.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import cluster from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import { createProviderFactory } from '../session/provider-factory.js'
import { ProviderRegistry } from '../session/provider-registry.js'
import { buildAuthSettings } from '../session/settings.js'
import { builtinClientSecret } from '../builtin-idp/from-config.js'
import type { Config } from '../config/types.js'
import type { RecordStore } from '../databroker/types.js'
import { startHealthServer } from '../observability/health.js'
import type { HealthServer, ReadinessCheck } from '../observability/health.js'
import { PortcullisMetrics } from '../observability/metrics.js'
import type { BuildInfo } from '../observability/metrics.js'
import { decodeMetricsBasicAuth, startMetricsServer } from '../observability/metrics-server.js'
import type { MetricsServer } from '../observability/metrics-server.js'
import type { Logger } from '../shared/log.js'

export const DEFAULT_HEALTH_CHECK_ADDR = '127.0.0.1:28080'

export function buildInfo(): BuildInfo {
  let version = 'unknown'
  try {
    version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    // running from an unusual layout: the version is only informative
  }
  return { version, revision: process.env['PORTCULLIS_REVISION'] ?? '' }
}

let workerAggregator: AggregatorRegistry<'text/plain; version=0.0.4; charset=utf-8'> | undefined

/** Metrics are collected only when they are served. */
export function createMetrics(config: Config): PortcullisMetrics | undefined {
  if (config.metrics.address === undefined) return undefined
  const metrics = new PortcullisMetrics(buildInfo())
  // A worker answers its primary's requests for metrics (prom-client's cluster protocol; the
  // constructor is what installs the worker's message listener).
  if (cluster.isWorker) {
    workerAggregator ??= new AggregatorRegistry()
    AggregatorRegistry.setRegistries([metrics.registry])
  }
  return metrics
}

/** A number that changes when the configuration does (never reveals it: a truncated hash). */
export function configChecksum(config: Config): number {
  const digest = createHash('sha256').update(JSON.stringify(config.raw)).digest()
  return digest.readUIntBE(0, 6)
}

/** Serves `metrics_address`; with workers (in the primary), the sum over every worker. */
export async function startMetricsListener(config: Config, logger: Logger, metrics: PortcullisMetrics | undefined, workers: boolean): Promise<MetricsServer | undefined> {
  // The settings were checked at load (src/config/service-settings.ts).
  const { address, certificate: cert, certificateKey: key, clientCa } = config.metrics
  if (address === undefined) return undefined
  const basicAuth = config.metrics.basicAuth === undefined ? undefined : decodeMetricsBasicAuth(config.metrics.basicAuth)
  const aggregator = workers ? new AggregatorRegistry() : undefined
  // The primary forwards no traffic: its own registry would only repeat the process metrics.
  const exposition = aggregator ? () => aggregator.clusterMetrics() : async () => (metrics ? await metrics.exposition() : '')
  const server = await startMetricsServer({
    address,
    basicAuth,
    tls: cert !== undefined && key !== undefined ? { cert, key, clientCa } : undefined,
    exposition,
    logger,
  })
  return server
}

/**
 * Serves `health_check_addr`. The default address being taken (a second instance on the host)
 * is a warning, not a failure; an address set explicitly must be free.
 */
export async function startHealthListener(config: Config, logger: Logger, checks: () => readonly ReadinessCheck[], status: () => Record<string, unknown>): Promise<HealthServer | undefined> {
  const address = config.healthCheckAddr
  try {
    return await startHealthServer({ address, logger, checks, status })
  } catch (err) {
    if ((err as { code?: string }).code === 'EADDRINUSE' && address === DEFAULT_HEALTH_CHECK_ADDR) {
      logger.warn({ address }, 'health_check_addr is in use (another instance on this host?): health probes are not served by this one')
      return undefined
    }
    throw err
  }
}

/** Readiness of every identity provider of the config: its discovery document can be read. */
export function providerDiscoveryChecks(config: Config, sharedSecret: Buffer): ReadinessCheck[] {
  const settings = buildAuthSettings(config, { builtinClientSecret: builtinClientSecret(config, sharedSecret) })
  const registry = new ProviderRegistry(createProviderFactory())
  return [...settings.providers.keys()].map((id) => ({
    name: `idp:${id}`,
    check: async () => {
      await registry.get(settings, id)?.needsPkce()
    },
  }))
}

/** Readiness of a session store: it answers. */
export function storeCheck(store: RecordStore): ReadinessCheck {
  return {
    name: 'databroker',
    check: async () => {
      try {
        await store.serverInfo()
      } catch (err) {
        throw new Error(`the session store does not answer (${err instanceof Error && 'code' in err ? String((err as { code: unknown }).code) : 'error'})`)
      }
    },
  }
}
