/**
 * Health probes on their own listener (`health_check_addr`, default `127.0.0.1:28080`), for load
 * balancers, Kubernetes and service managers:
 *
 * - `/healthz`: 200 while the process runs (liveness; stays 200 while draining).
 * - `/startupz`: 503 until every listener is up, then 200.
 * - `/readyz`: 200 when started, not shutting down, and every readiness check passes (the
 *   session store answers, each identity provider's discovery document could be read); else 503
 *   with the failing checks. On SIGTERM it turns 503 first, then connections drain.
 * - `/status`: the same verdict as JSON with details (version, services, uptime, checks).
 *
 * `GET` and `HEAD` only. Check errors are short descriptions, never connection strings.
 */
import * as http from 'node:http'
import { guardedRequestListener } from '../shared/boundary.js'
import type { HandlerOutcome } from '../shared/boundary.js'
import type { Logger } from '../shared/log.js'
import { closeServer, listenOn } from './listen.js'

export interface ReadinessCheck {
  readonly name: string
  /** Resolves when healthy; rejects with a short reason. */
  check(): Promise<void>
}

export interface HealthServerOptions {
  readonly address: string
  readonly logger: Logger
  readonly checks: () => readonly ReadinessCheck[]
  /** Extra fields of `/status`. */
  readonly status: () => Record<string, unknown>
  /** Time limit of one readiness check (default 2 s). */
  readonly checkTimeoutMs?: number
}

export interface HealthServer {
  readonly url: string
  /** Every listener is up: `/startupz` and (checks permitting) `/readyz` turn 200. */
  markStarted(): void
  /** Shutting down: `/readyz` turns 503 for good. */
  markDraining(): void
  close(): Promise<void>
}

type Verdict = { ready: boolean; state: 'starting' | 'draining' | 'ready' | 'not ready'; checks: Record<string, string> }

async function runCheck(c: ReadinessCheck, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      c.check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
      }),
    ])
    return 'ok'
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  } finally {
    clearTimeout(timer)
  }
}

export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  let started = false
  let draining = false
  const timeoutMs = options.checkTimeoutMs ?? 2_000
  const startedAt = Date.now()

  const verdict = async (): Promise<Verdict> => {
    const checks: Record<string, string> = {}
    const list = options.checks()
    const results = await Promise.all(list.map((c) => runCheck(c, timeoutMs)))
    list.forEach((c, i) => (checks[c.name] = results[i] ?? 'unknown'))
    const allOk = results.every((r) => r === 'ok')
    if (draining) return { ready: false, state: 'draining', checks }
    if (!started) return { ready: false, state: 'starting', checks }
    return { ready: allOk, state: allOk ? 'ready' : 'not ready', checks }
  }

  const send = (req: http.IncomingMessage, res: http.ServerResponse, status: number, body: string, type: string): void => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : body)
  }
  const json = (req: http.IncomingMessage, res: http.ServerResponse, status: number, value: unknown): void =>
    send(req, res, status, `${JSON.stringify(value)}\n`, 'application/json')

  // Every answer goes through the boundary (src/shared/boundary.ts): a failing check or status
  // callback costs one request a 500, never the process.
  const handle = (req: http.IncomingMessage, res: http.ServerResponse): HandlerOutcome => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    switch ((req.url ?? '').split('?')[0] ?? '') {
      case '/healthz':
        return send(req, res, 200, 'OK\n', 'text/plain; charset=utf-8')
      case '/startupz':
        return send(req, res, started ? 200 : 503, started ? 'OK\n' : 'starting\n', 'text/plain; charset=utf-8')
      case '/readyz':
        return verdict().then(
          (v) => json(req, res, v.ready ? 200 : 503, { status: v.state, checks: v.checks }),
          () => json(req, res, 503, { status: 'not ready' }),
        )
      case '/status':
        return verdict().then(
          (v) => json(req, res, 200, { status: v.state, ready: v.ready, started, draining, uptime_seconds: Math.round((Date.now() - startedAt) / 1000), checks: v.checks, ...options.status() }),
          () => json(req, res, 500, { status: 'unknown' }),
        )
      default:
        return send(req, res, 404, 'not found\n', 'text/plain; charset=utf-8')
    }
  }
  const server = http.createServer(guardedRequestListener(handle, { listener: 'health', logger: options.logger }))
  const url = await listenOn(server, options.address, 'http')
  return {
    url,
    markStarted: () => (started = true),
    markDraining: () => {
      if (!draining) options.logger.info('shutting down: /readyz answers 503 from now on')
      draining = true
    },
    close: () => closeServer(server),
  }
}
