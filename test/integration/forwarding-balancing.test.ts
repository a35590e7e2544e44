/**
 * Forwarding integration tests: `to` lists with weights, every `load_balancing_policy`, passive
 * ejection of an unreachable target and active HTTP health checks.
 *
 * Each upstream answers with its own name, so the test can see which one a request reached.
 * `xff_num_trusted_hops: 1` lets the test choose the client IP (the hash key of RING_HASH and
 * MAGLEV) with `X-Forwarded-For`.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { closedPort, nameOf, sleep, startNamedUpstream } from './forwarding-helpers.js'
import type { NamedUpstream } from './forwarding-helpers.js'

const PUBLIC = { allow_public_unauthenticated_access: true }

void describe('forwarding: load balancing and upstream health', () => {
  let px: PortcullisProcess
  const ups: Record<string, NamedUpstream> = {}
  let deadPort = 0

  const get = async (host: string, path = '/', headers: Record<string, string> = {}): Promise<{ status: number; name: string | undefined }> => {
    const r = await request(`${px.url}${path}`, { host, headers })
    return { status: r.status, name: r.status === 200 ? nameOf(r.body) : undefined }
  }
  const tally = (names: readonly (string | undefined)[]): Record<string, number> => {
    const out: Record<string, number> = {}
    for (const n of names) out[n ?? 'none'] = (out[n ?? 'none'] ?? 0) + 1
    return out
  }

  before(async () => {
    for (const name of ['a', 'b', 'c', 'good', 'healthy', 'sick', 'lr1', 'lr2']) ups[name] = await startNamedUpstream(name)
    deadPort = await closedPort()
    const u = (n: string): string => (ups[n] as NamedUpstream).url
    px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      xff_num_trusted_hops: 1,
      routes: [
        { from: 'https://rr.localhost', to: [`${u('a')},1`, `${u('b')},3`], load_balancing_policy: 'ROUND_ROBIN', ...PUBLIC },
        { from: 'https://default.localhost', to: [u('a'), u('b'), u('c')], ...PUBLIC },
        { from: 'https://random.localhost', to: [`${u('a')},1`, `${u('b')},4`], load_balancing_policy: 'RANDOM', ...PUBLIC },
        { from: 'https://least.localhost', to: [u('lr1'), u('lr2')], load_balancing_policy: 'LEAST_REQUEST', ...PUBLIC },
        { from: 'https://ring.localhost', to: [u('a'), u('b'), u('c')], load_balancing_policy: 'RING_HASH', ...PUBLIC },
        { from: 'https://maglev.localhost', to: [u('a'), u('b'), u('c')], load_balancing_policy: 'MAGLEV', ...PUBLIC },
        { from: 'https://eject.localhost', to: [u('good'), `http://127.0.0.1:${deadPort}`], ...PUBLIC },
        {
          from: 'https://checked.localhost',
          to: [u('healthy'), u('sick')],
          health_checks: [
            { timeout: '1s', interval: '1s', unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: { path: '/health' } },
          ],
          ...PUBLIC,
        },
      ],
    })
  })
  after(async () => {
    await px?.stop()
    for (const up of Object.values(ups)) await up.close()
  })

  void it('ROUND_ROBIN spreads requests in proportion to the `url,weight` weights', async () => {
    const names: (string | undefined)[] = []
    for (let i = 0; i < 40; i++) names.push((await get('rr.localhost')).name)
    assert.deepEqual(tally(names), { a: 10, b: 30 })
    // Smooth weighting: the light target is never starved for a long run.
    assert.ok(names.slice(0, 4).includes('a'), names.slice(0, 4).join(','))
  })

  void it('the default policy (round robin) visits every target in turn', async () => {
    const names: (string | undefined)[] = []
    for (let i = 0; i < 9; i++) names.push((await get('default.localhost')).name)
    assert.deepEqual(tally(names), { a: 3, b: 3, c: 3 })
    assert.equal(new Set(names.slice(0, 3)).size, 3)
  })

  void it('RANDOM reaches every target, favouring the heavier one', async () => {
    const names: (string | undefined)[] = []
    for (let i = 0; i < 150; i++) names.push((await get('random.localhost')).name)
    const t = tally(names)
    assert.ok((t['a'] ?? 0) >= 5, JSON.stringify(t))
    assert.ok((t['b'] ?? 0) > 2 * (t['a'] ?? 0), JSON.stringify(t))
    assert.equal((t['a'] ?? 0) + (t['b'] ?? 0), 150)
    // Not a disguised round robin: the light target does not come back at a fixed period.
    const positions = names.flatMap((n, i) => (n === 'a' ? [i] : []))
    const gaps = new Set(positions.slice(1).map((p, i) => p - (positions[i] as number)))
    assert.ok(gaps.size > 1, `gaps between picks of the light target: ${[...gaps].join(',')}`)
  })

  void it('LEAST_REQUEST avoids the target that is busy with a slow request', async () => {
    const lr1 = ups['lr1'] as NamedUpstream
    const lr2 = ups['lr2'] as NamedUpstream
    // Hold one request open on whichever target gets it.
    const slow = request(`${px.url}/slow-upload?wait=2000`, { host: 'least.localhost', method: 'POST', body: 'x' })
    const deadline = Date.now() + 2000
    while (lr1.hits + lr2.hits === 0 && Date.now() < deadline) await sleep(10)
    const busy = lr1.hits > 0 ? 'lr1' : 'lr2'
    const names: (string | undefined)[] = []
    for (let i = 0; i < 10; i++) names.push((await get('least.localhost')).name)
    assert.deepEqual(tally(names), { [busy === 'lr1' ? 'lr2' : 'lr1']: 10 })
    assert.equal((await slow).status, 200)
  })

  for (const [policy, host] of [
    ['RING_HASH', 'ring.localhost'],
    ['MAGLEV', 'maglev.localhost'],
  ] as const) {
    void it(`${policy} keeps each client IP on one target and spreads different IPs`, async () => {
      const chosen = new Map<string, string | undefined>()
      for (let i = 1; i <= 24; i++) {
        const ip = `10.1.${i}.${i * 7}`
        const seen = new Set<string | undefined>()
        for (let k = 0; k < 4; k++) {
          const r = await get(host, `/req/${k}`, { 'x-forwarded-for': ip })
          assert.equal(r.status, 200)
          seen.add(r.name)
        }
        assert.equal(seen.size, 1, `${ip} went to ${[...seen].join(',')}`)
        chosen.set(ip, [...seen][0])
      }
      const spread = new Set(chosen.values())
      assert.ok(spread.size >= 2, `24 client IPs all went to ${[...spread].join(',')}`)
    })
  }

  void it('passively ejects an unreachable target after a few 503s', async () => {
    const statuses: number[] = []
    const names: (string | undefined)[] = []
    for (let i = 0; i < 30; i++) {
      const r = await get('eject.localhost')
      statuses.push(r.status)
      names.push(r.name)
    }
    const failures = statuses.filter((s) => s === 503).length
    assert.ok(failures >= 1 && failures <= 6, `503s: ${failures} (${statuses.join(',')})`)
    assert.ok(statuses.every((s) => s === 200 || s === 503), statuses.join(','))
    // Once ejected, only the good target is picked.
    assert.deepEqual(statuses.slice(-15), Array(15).fill(200))
    assert.deepEqual(tally(names.slice(-15)), { good: 15 })
  })

  void it('active health checks stop traffic to an upstream failing its health path, and restore it', { timeout: 20_000 }, async () => {
    const healthy = ups['healthy'] as NamedUpstream
    const sick = ups['sick'] as NamedUpstream
    // The health path is only for the checker; normal requests to "sick" would succeed.
    sick.healthStatus = 500
    // Wait for two probes after the change: the second one has certainly been judged.
    const probed = sick.healthHits
    const deadline = Date.now() + 6000
    while (sick.healthHits < probed + 2 && Date.now() < deadline) await sleep(50)
    assert.ok(healthy.healthHits >= 1 && sick.healthHits >= probed + 2, 'health checks are sent')
    const names: (string | undefined)[] = []
    for (let i = 0; i < 12; i++) names.push((await get('checked.localhost')).name)
    assert.deepEqual(tally(names), { healthy: 12 })

    sick.healthStatus = 200
    const seenBefore = sick.healthHits
    while (sick.healthHits < seenBefore + 2 && Date.now() < deadline + 6000) await sleep(50)
    const after: (string | undefined)[] = []
    for (let i = 0; i < 8; i++) after.push((await get('checked.localhost')).name)
    assert.ok(after.includes('sick'), `recovered upstream gets traffic again: ${after.join(',')}`)
  })
})
