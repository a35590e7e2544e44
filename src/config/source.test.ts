import { test } from 'node:test'
import assert from 'node:assert/strict'
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLogger } from '../shared/log.js'
import { ConfigSource } from './source.js'
import type { Config } from './types.js'
import { tempDir } from './test-helpers.js'

/** How long a stopped source is given to (wrongly) act on a SIGHUP. */
const NO_RELOAD_WINDOW_MS = 100

function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = []
  return { logger: createLogger('debug', { write: (s: string) => void lines.push(s) }), lines }
}

/** Polls `predicate` until true, failing after `ms`. */
async function waitFor(predicate: () => boolean, what: string, ms = 4000): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Replaces a file the way editors do: write a temp file, then rename it over the original. */
function replaceFile(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`
  writeFileSync(tmp, text)
  renameSync(tmp, path)
}

const route = (host: string) => `routes:\n  - from: https://${host}\n    to: http://127.0.0.1:1\n`

test('ConfigSource reloads on config file change and keeps the old config on invalid changes', async () => {
  const tmp = tempDir()
  const { logger, lines } = capturingLogger()
  const file = tmp.write('config.yaml', route('one.example.com'))
  const source = new ConfigSource({ file, env: {}, logger, debounceMs: 30 })
  try {
    const initial = source.load()
    assert.ok(initial.config)
    assert.equal(source.current().routes[0]?.from.host, 'one.example.com')
    const seen: Config[] = []
    source.onChange((c) => seen.push(c))
    source.start()

    replaceFile(file, route('two.example.com'))
    await waitFor(() => seen.length === 1, 'reload after a valid change')
    assert.equal(source.current().routes[0]?.from.host, 'two.example.com')
    assert.equal(seen[0], source.current())

    writeFileSync(file, 'routes:\n  - from: ftp://broken\n    to: http://x\n')
    await waitFor(() => lines.some((l) => l.includes('reload failed')), 'the failed reload to be logged')
    assert.ok(lines.some((l) => l.includes('"level":"error"') && l.includes('routes[0].from')))
    assert.equal(source.current().routes[0]?.from.host, 'two.example.com')
    assert.equal(seen.length, 1)

    // Fixing the file recovers.
    writeFileSync(file, route('three.example.com'))
    await waitFor(() => seen.length === 2, 'reload after the fix')
    assert.equal(source.current().routes[0]?.from.host, 'three.example.com')
  } finally {
    source.stop()
    tmp.cleanup()
  }
})

test('ConfigSource reloads when a referenced file changes', async () => {
  const tmp = tempDir()
  const { logger } = capturingLogger()
  const secretA = Buffer.alloc(32, 1).toString('base64')
  const secretB = Buffer.alloc(32, 2).toString('base64')
  // The referenced file lives in a different directory from the config file.
  const secrets = tempDir()
  const secretFile = secrets.write('shared', secretA)
  const file = tmp.write('config.yaml', `shared_secret_file: ${secretFile}\n`)
  const source = new ConfigSource({ file, env: {}, logger, debounceMs: 30 })
  try {
    assert.ok(source.load().config)
    assert.deepEqual(source.current().source.referencedFiles, [secretFile])
    let changed: Config | undefined
    source.onChange((c) => {
      changed = c
    })
    source.start()
    replaceFile(secretFile, secretB)
    await waitFor(() => changed !== undefined, 'reload after the secret file changed')
    assert.equal(changed?.raw['shared_secret'], secretB)
  } finally {
    source.stop()
    tmp.cleanup()
    secrets.cleanup()
  }
})

test('ConfigSource reloads on SIGHUP, and stop() removes the handler', async () => {
  const { logger } = capturingLogger()
  const env: Record<string, string | undefined> = { ADDRESS: ':1111' }
  const source = new ConfigSource({ file: undefined, env, logger })
  // A guard listener so a SIGHUP after stop() cannot terminate the test process.
  const guard = (): void => {}
  process.on('SIGHUP', guard)
  try {
    assert.equal(source.load().config?.address.port, 1111)
    const ports: number[] = []
    const off = source.onChange((c) => ports.push(c.address.port))
    source.start()
    env['ADDRESS'] = ':2222'
    process.kill(process.pid, 'SIGHUP')
    await waitFor(() => ports.length === 1, 'reload on SIGHUP')
    assert.deepEqual(ports, [2222])
    assert.equal(source.current().address.port, 2222)

    off()
    env['ADDRESS'] = ':3333'
    assert.equal(source.reload(), true)
    assert.deepEqual(ports, [2222], 'unsubscribed listener is not called')

    source.stop()
    env['ADDRESS'] = ':4444'
    process.kill(process.pid, 'SIGHUP')
    // Proving that nothing happens: a source still listening would have reloaded by now.
    await sleep(NO_RELOAD_WINDOW_MS)
    assert.equal(source.current().address.port, 3333)
  } finally {
    source.stop()
    process.off('SIGHUP', guard)
  }
})

test('current() throws before a successful load; a failed initial load returns issues', () => {
  const tmp = tempDir()
  try {
    const { logger } = capturingLogger()
    const source = new ConfigSource({ file: join(tmp.dir, 'missing.yaml'), env: {}, logger })
    const result = source.load()
    assert.equal(result.config, undefined)
    assert.equal(result.issues.length, 1)
    assert.throws(() => source.current(), /no configuration loaded/)
    assert.equal(source.reload(), false)
  } finally {
    tmp.cleanup()
  }
})
