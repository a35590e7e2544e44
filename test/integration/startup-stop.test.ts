/**
 * A stop signal at any moment of start-up stops the process promptly: SIGTERM right after spawn,
 * right after the first log line, and in the middle of start-up (the primary's internal API is
 * up, its workers are starting), with workers and without. Once "shutting down" is logged, no
 * listener comes up, and no process of the group outlives the exit.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { after, describe, it } from 'node:test'
import { isBuilt, MAIN_SCRIPT, parseLogLine, REPO_ROOT } from '../fixtures/portcullis.js'
import type { LogEntry } from '../fixtures/portcullis.js'

/**
 * Before the fix the primary waited for workers that never heard the stop, then killed them
 * after 15 s. A few seconds is plenty for a process that has nothing to drain yet.
 */
const EXIT_BOUND_MS = 8_000

const dir = mkdtempSync(join(tmpdir(), 'portcullis-startup-stop-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function writeConfig(workers: number): string {
  const file = join(dir, `config-${workers}.yaml`)
  writeFileSync(
    file,
    `address: 127.0.0.1:0
insecure_server: true
health_check_addr: 127.0.0.1:0
workers: ${workers}
routes:
  - from: http://app.localhost
    to: http://127.0.0.1:9
    allow_public_unauthenticated_access: true
`,
  )
  return file
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 50))
  }
  return true
}

/**
 * A start-up gate for cluster workers, loaded with `node --import` (cluster workers inherit the
 * primary's execArgv): a worker says so on stdout, then its entry point waits (top-level await of
 * an imported module holds the main module back) for `HOLD_MS`, so it has not even loaded
 * Portcullis, let alone reported ready. The primary is not held. This lives only in the test: the
 * product has no such hook. Without it, a signal sent at a worker's first log line raced the
 * workers' start-up: sometimes both had reported ready before the stop arrived, the primary had
 * announced its listeners, and the test saw an ordinary shutdown instead of a stop during start-up.
 */
const GATE_MSG = 'test gate: worker held before loading'
const HOLD_MS = 30_000
const workerGate = join(dir, 'worker-gate.mjs')
writeFileSync(
  workerGate,
  `import cluster from 'node:cluster'
if (cluster.isWorker) {
  process.stdout.write(JSON.stringify({ pid: process.pid, msg: ${JSON.stringify(GATE_MSG)} }) + '\\n')
  await new Promise((resolve) => setTimeout(resolve, ${HOLD_MS}))
}
`,
)

/**
 * `when` picks the moment: undefined is right after spawn, else the first log line it matches.
 * `nodeArgs` go before the script (e.g. `--import` of the worker gate). Returns the log lines.
 */
async function stopDuringStartup(configFile: string, when: ((e: LogEntry) => boolean) | undefined, nodeArgs: readonly string[] = []): Promise<LogEntry[]> {
  const child = spawn(process.execPath, [...nodeArgs, MAIN_SCRIPT, '--config', configFile], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const pgid = child.pid as number
  const entries: LogEntry[] = []
  let stderr = ''
  let signalled: number | undefined
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const signal = (): void => {
    if (signalled !== undefined) return
    signalled = Date.now()
    child.kill('SIGTERM')
  }
  let pending = ''
  child.stdout.on('data', (c: Buffer) => {
    pending += c.toString()
    let nl: number
    while ((nl = pending.indexOf('\n')) !== -1) {
      const entry = parseLogLine(pending.slice(0, nl))
      pending = pending.slice(nl + 1)
      entries.push(entry)
      if (when?.(entry)) signal()
    }
  })
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  try {
    if (when === undefined) signal()
    let timer: NodeJS.Timeout | undefined
    const exit = await Promise.race([exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 60_000)))])
    clearTimeout(timer)
    const describe = `\n--- stdout ---\n${entries.map((e) => JSON.stringify(e)).join('\n')}\n--- stderr ---\n${stderr}`
    assert.ok(exit, `the process exited${describe}`)
    assert.ok(signalled !== undefined, `the moment to signal came${describe}`)
    const tookMs = Date.now() - signalled
    assert.ok(tookMs < EXIT_BOUND_MS, `exited ${tookMs} ms after SIGTERM (bound ${EXIT_BOUND_MS} ms)${describe}`)
    // Killed by the signal before any handler existed, or a clean exit 0 after one.
    assert.ok(exit.code === 0 || exit.signal === 'SIGTERM', `exit ${JSON.stringify(exit)}${describe}`)
    const shutdown = entries.find((e) => typeof e['msg'] === 'string' && e['msg'].startsWith('shutting down'))
    if (shutdown) {
      // By the lines' own times: the log is written asynchronously, and the shutdown line (written
      // synchronously from the signal handler) can reach stdout before lines logged earlier.
      const at = Date.parse(String(shutdown['time']))
      const later = entries.filter((e) => e['msg'] === 'listening' && Date.parse(String(e['time'])) > at)
      assert.deepEqual(later, [], `no listener comes up after "shutting down"${describe}`)
    }
    assert.ok(await waitFor(() => !groupAlive(pgid), 3_000), `no worker outlives the process${describe}`)
    return entries
  } finally {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
}

type Moment = [string, ((e: LogEntry) => boolean) | undefined]
const moments: Moment[] = [
  ['right after spawn', undefined],
  ['right after the first log line', () => true],
]
/** With workers, the primary serves its internal API to them before it forks them. */
const primaryMoment: Moment = ['when the internal API is up', (e) => e['msg'] === 'internal API listening']

describe('SIGTERM during start-up', { skip: isBuilt() ? false : 'run npm run build first' }, () => {
  for (const workers of [2, 1]) {
    for (const [moment, when] of workers > 1 ? [...moments, primaryMoment] : moments) {
      void it(`workers: ${workers}, ${moment}: exits promptly and nothing listens after "shutting down"`, async () => {
        await stopDuringStartup(writeConfig(workers), when)
      })
    }
  }

  void it('workers: 2, while the workers start: the primary stops them at once', async () => {
    // Both workers are held by the gate, so neither can have reported ready: the stop comes while
    // they start. A held worker has no handler for anything yet; unless the primary ends it at
    // once (SIGTERM, whose default action ends a process that has no handler), it stays held for
    // HOLD_MS, far beyond EXIT_BOUND_MS, and the exit bound fails.
    const held = new Set<unknown>()
    const entries = await stopDuringStartup(
      writeConfig(2),
      (e) => {
        if (e['msg'] === GATE_MSG) held.add(e['pid'])
        return held.size === 2
      },
      ['--import', pathToFileURL(workerGate).href],
    )
    assert.deepEqual(
      entries.filter((e) => e['msg'] === 'listening'),
      [],
      'the primary never announced its listeners: the workers were still starting when the stop came',
    )
    assert.ok(
      entries.some((e) => e['msg'] === 'shutting down workers'),
      'the primary was supervising the workers when the stop came',
    )
  })
})
