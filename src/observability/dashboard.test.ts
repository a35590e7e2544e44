/**
 * The Grafana dashboard shipped in deploy/grafana: every metric it queries exists in the
 * exposition, and every query is valid PromQL (`promtool check rules`, when promtool is there:
 * always under CI).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { stringify } from 'yaml'
import { IDLE_IDENTITY_MANAGER_METRICS, PortcullisMetrics } from './metrics.js'

const DASHBOARD = new URL('../../deploy/grafana/portcullis-dashboard.json', import.meta.url)

interface Dashboard {
  readonly panels: readonly { readonly title: string; readonly targets: readonly { readonly expr: string }[] }[]
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })))

test('every metric the dashboard queries is exported', async () => {
  const metrics = new PortcullisMetrics({ version: '0.0.0', revision: '' })
  // As in a process that runs authenticate or authorize (the one that runs the identity manager).
  metrics.identityManager(() => IDLE_IDENTITY_MANAGER_METRICS)
  const names = new Set<string>()
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    names.add(m.name)
    if (String(m.type) === 'histogram') for (const suffix of ['_bucket', '_count', '_sum']) names.add(`${m.name}${suffix}`)
  }
  assert.ok(exprs.length >= 10)
  for (const { panel, expr } of exprs) {
    const used = expr.match(/\b(?:pomerium|nodejs|process)_[a-z0-9_]+\b/g) ?? []
    assert.ok(used.length > 0, `${panel}: queries a Portcullis metric`)
    for (const name of used) assert.ok(names.has(name), `${panel}: ${name} is not exported`)
  }
})

const promtool = spawnSync('promtool', ['--version']).status === 0
if (!promtool && process.env['CI'] === undefined) console.warn('\n*** promtool is missing: the dashboard PromQL check is SKIPPED (it runs under CI) ***\n')
test('every dashboard query is valid PromQL', { skip: !promtool && process.env['CI'] === undefined ? 'promtool missing (Debian package prometheus); runs under CI' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-dashboard-'))
  try {
    const rules = exprs.map(({ expr }, i) => ({
      record: `portcullis:dashboard_query_${i}`,
      // Grafana's variables, as Grafana would substitute them.
      expr: expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*').replaceAll('$route', '.*'),
    }))
    const file = join(dir, 'rules.yaml')
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }))
    const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' })
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('tunnel metrics: open gauge up and down, closes by reason, bytes by direction, duration', async () => {
  const metrics = new PortcullisMetrics({ version: '0.0.0', revision: '' }, { processMetrics: false })
  metrics.tunnelOpened('db', 'tcp')
  metrics.tunnelOpened('db', 'tcp')
  metrics.tunnelClosed('db', 'tcp', 'access_revoked', 10, 2000, 1500)
  const text = await metrics.registry.metrics()
  assert.match(text, /portcullis_tunnels_open\{route="db",kind="tcp"\} 1\n/)
  assert.match(text, /portcullis_tunnels_closed_total\{route="db",kind="tcp",reason="access_revoked"\} 1\n/)
  assert.match(text, /portcullis_tunnel_bytes_total\{route="db",kind="tcp",direction="upstream"\} 10\n/)
  assert.match(text, /portcullis_tunnel_bytes_total\{route="db",kind="tcp",direction="downstream"\} 2000\n/)
  assert.match(text, /portcullis_tunnel_duration_ms_count\{route="db",kind="tcp"\} 1\n/)
})

test('directory sync metrics: counters, last success, stale only where this instance leads (0 elsewhere)', async () => {
  const metrics = new PortcullisMetrics({ version: '0.0.0', revision: '' }, { processMetrics: false })
  let state = { leader: true, successes: 3, errors: 1, throttled: 2, lastSuccessAt: 1_700_000_000_000, users: 40, groups: 5, stale: true }
  metrics.directorySync(() => state)
  let text = await metrics.registry.metrics()
  assert.match(text, /portcullis_directory_sync_success 3\n/)
  assert.match(text, /portcullis_directory_sync_errors 1\n/)
  assert.match(text, /portcullis_directory_sync_throttled 2\n/)
  assert.match(text, /portcullis_directory_sync_last_success_timestamp 1700000000\n/)
  assert.match(text, /portcullis_directory_sync_stale 1\n/)
  assert.match(text, /portcullis_directory_users 40\n/)
  assert.match(text, /portcullis_directory_groups 5\n/)
  assert.match(text, /portcullis_directory_sync_leader 1\n/)
  state = { ...state, leader: false }
  text = await metrics.registry.metrics()
  assert.match(text, /portcullis_directory_sync_stale 0\n/)
  assert.match(text, /portcullis_directory_sync_leader 0\n/)
})
