/**
 * The import rules of the house (docs/architecture.md, scripts/check-architecture.ts): the rule
 * table refuses each arrow the issue names, and the tree as it is obeys it.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { importEdges, violations } from '../scripts/check-architecture.js'

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src')

const refused = (from: string, to: string): boolean => violations([{ from, to }]).length === 1

test('the source tree obeys the import rules', () => {
  const edges = importEdges(SRC)
  assert.ok(edges.length > 500, `the scan finds the imports (${edges.length})`)
  assert.deepEqual(violations(edges), [])
})

test('policy imports nothing outside itself', () => {
  assert.ok(refused('policy/decide.ts', 'config/types.ts'))
  assert.ok(refused('policy/decide.ts', 'shared/log.ts'))
  assert.ok(!refused('policy/criteria/date.ts', 'policy/clock.ts'))
})

test('storage and config import no service', () => {
  for (const service of ['proxy/server.ts', 'authenticate/service.ts', 'authorize/plans.ts', 'session/session-store.ts']) {
    assert.ok(refused('databroker/memory.ts', service), `databroker -> ${service}`)
    assert.ok(refused('config/load.ts', service), `config -> ${service}`)
  }
})

test('authorize imports neither the proxy nor the UI', () => {
  assert.ok(refused('authorize/plans.ts', 'proxy/server.ts'))
  assert.ok(refused('authorize/policy-authorizer.ts', 'ui/pages.ts'))
})

test('no two services import each other; the proxy uses only the contracts', () => {
  assert.ok(refused('authorize/policy-authorizer.ts', 'authenticate/flow.ts'))
  assert.ok(refused('authenticate/route-endpoints.ts', 'authorize/policy-authorizer.ts'))
  assert.ok(refused('authenticate/service.ts', 'proxy/server.ts'))
  assert.ok(!refused('proxy/server.ts', 'authorize/types.ts'))
  assert.ok(!refused('proxy/server.ts', 'authenticate/endpoint.ts'))
  assert.ok(refused('proxy/server.ts', 'authorize/plans.ts'))
  assert.ok(refused('proxy/server.ts', 'session/session-store.ts'))
})

test('nothing imports up into the composition root or the commands', () => {
  assert.ok(refused('proxy/server.ts', 'all-in-one/start.ts'))
  assert.ok(refused('all-in-one/start.ts', 'cmd/serve.ts'))
  assert.ok(!refused('cmd/serve.ts', 'all-in-one/start.ts'))
  assert.ok(!refused('all-in-one/start.ts', 'proxy/server.ts'))
})

test('the tunnel client imports no server part; only the commands use it', () => {
  assert.ok(refused('client/jwt-cache.ts', 'proxy/server.ts'))
  assert.ok(refused('client/jwt-cache.ts', 'session/session-store.ts'))
  assert.ok(!refused('client/jwt-cache.ts', 'shared/log.ts'))
  assert.ok(!refused('cmd/tcp.ts', 'client/jwt-cache.ts'))
  assert.ok(refused('proxy/server.ts', 'client/jwt-cache.ts'))
})

test('a folder missing from the layer table is refused', () => {
  const [v] = violations([{ from: 'tunnels/relay.ts', to: 'shared/log.ts' }])
  assert.match(v?.message ?? '', /not in the layer table/)
})

test('the scan reads static, type-only, re-export and dynamic imports, and skips tests', () => {
  const root = mkdtempSync(join(tmpdir(), 'arch-'))
  try {
    const write = (path: string, text: string): void => {
      mkdirSync(dirname(join(root, path)), { recursive: true })
      writeFileSync(join(root, path), text)
    }
    write('policy/a.ts', "import { x } from '../config/b.js'\nimport type { T } from '../shared/c.js'\nexport { y } from '../proxy/d.js'\nconst m = await import('../ui/e.js')\nimport 'node:fs'\n")
    write('policy/a.test.ts', "import { x } from '../proxy/server.js'\n")
    write('policy/h.test-helpers.ts', "import { x } from '../proxy/server.js'\n")
    const edges = importEdges(root)
    assert.deepEqual(
      edges.map((e) => `${e.from} -> ${e.to}`).sort(),
      ['policy/a.ts -> config/b.ts', 'policy/a.ts -> proxy/d.ts', 'policy/a.ts -> shared/c.ts', 'policy/a.ts -> ui/e.ts'],
    )
    assert.equal(violations(edges).length, 4)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})
