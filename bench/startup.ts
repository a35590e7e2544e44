/**
 * Start-up and reload time with many routes (`npm run bench:startup`; docs/performance.md):
 * Portcullis is started with BENCH_ROUTES (default 10,000) routes, each with a policy, and the
 * time from spawning the process to its `listening` line is taken; then the config file is
 * rewritten (every route's policy changed) and the time until `config reloaded` is logged is
 * taken. BENCH_RUNS (default 3) runs; the median is reported.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'

import YAML from 'yaml'

import { startPortcullis } from '../test/fixtures/portcullis.js'
import { freePort } from '../test/fixtures/sign-in.js'

const ROUTES = Number(process.env['BENCH_ROUTES'] ?? 10_000)
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3)

function routes(generation: number): Array<Record<string, unknown>> {
  return Array.from({ length: ROUTES }, (_, i) => ({
    from: `https://app-${i}.example.com`,
    to: `http://127.0.0.1:${10_000 + (i % 1000)}`,
    policy: { allow: { and: [{ domain: { is: `example-${generation}.com` } }, { http_path: { starts_with: `/p${i % 17}` } }] } },
    pass_identity_headers: i % 2 === 0,
  }))
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN
const starts: number[] = []
const reloads: number[] = []
for (let run = 0; run < RUNS; run++) {
  const port = await freePort()
  const config = {
    address: `127.0.0.1:${port}`,
    insecure_server: true,
    log_level: 'info',
    shared_secret: randomBytes(32).toString('base64'),
    cookie_secret: randomBytes(32).toString('base64'),
    authenticate_service_url: 'https://authn.example.com',
    idp_provider: 'oidc',
    idp_provider_url: 'https://idp.example.com',
    idp_client_id: 'c',
    idp_client_secret: 's',
    routes: routes(0),
  }
  let t = performance.now()
  const proc = await startPortcullis(config, { timeoutMs: 120_000 })
  starts.push(performance.now() - t)
  try {
    const file = proc.configFile
    const current = YAML.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    const before = proc.logs.length
    t = performance.now()
    writeFileSync(file, YAML.stringify({ ...current, routes: routes(run + 1) }))
    await proc.waitForLog((e, line) => e['msg'] === 'config reloaded' && proc.logs.indexOf(line) >= before, 120_000)
    reloads.push(performance.now() - t)
  } finally {
    await proc.stop()
  }
  process.stderr.write(`run ${run + 1}: start ${starts[run]?.toFixed(0)} ms, reload ${reloads[run]?.toFixed(0)} ms\n`)
}
console.log(`${ROUTES} routes: start-up (spawn to listening) median ${median(starts).toFixed(0)} ms; full reload (file written to "config reloaded") median ${median(reloads).toFixed(0)} ms; runs: ${RUNS}`)
