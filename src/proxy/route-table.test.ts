import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RouteConfig } from '../config/types.js'
import { Pattern } from '../shared/pattern.js'
import { routeConfig } from '../../test/fixtures/route-config.js'
import { RouteTable } from './route-table.js'

const host = (h: string, port?: number) => ({ scheme: 'https', host: h, port })

test('routes on one host are tried in config order; the first whose path rule matches wins', () => {
  const a = routeConfig({ index: 0, id: 'a', prefix: '/admin' })
  const b = routeConfig({ index: 1, id: 'b' })
  const c = routeConfig({ index: 2, id: 'c', prefix: '/admin/x' })
  const table = new RouteTable([a, b, c])
  assert.equal(table.match('app.example.com', 443, '/admin/x'), a)
  assert.equal(table.match('app.example.com', 443, '/administrator'), a, 'prefix is a string prefix, as in Envoy')
  assert.equal(table.match('app.example.com', 443, '/other'), b)
})

test('within a route regex beats path beats prefix', () => {
  const r = routeConfig({ regex: '/r/[0-9]+', regexCompiled: Pattern.compile('/r/[0-9]+', true) as Pattern, path: '/exact', prefix: '/p' })
  const table = new RouteTable([r])
  assert.equal(table.match('app.example.com', 443, '/r/12'), r)
  assert.equal(table.match('app.example.com', 443, '/exact'), undefined, 'path is ignored when regex is set')
  assert.equal(table.match('app.example.com', 443, '/r/12/x'), undefined, 'regex is anchored')
  const p = routeConfig({ path: '/exact', prefix: '/p' })
  const t2 = new RouteTable([p])
  assert.equal(t2.match('app.example.com', 443, '/exact'), p)
  assert.equal(t2.match('app.example.com', 443, '/p/x'), undefined, 'prefix is ignored when path is set')
})

test('an exact host beats a wildcard host, and a wildcard serves hosts without exact routes', () => {
  const wild = routeConfig({ id: 'w', from: host('*.example.com') })
  const exact = routeConfig({ id: 'e', from: host('admin.example.com'), prefix: '/only' })
  const table = new RouteTable([wild, exact])
  assert.equal(table.match('admin.example.com', 443, '/only/x'), exact)
  assert.equal(table.match('admin.example.com', 443, '/other'), undefined, 'the exact host does not fall through to the wildcard')
  assert.equal(table.match('x.example.com', 443, '/'), wild)
  assert.equal(table.match('a.b.example.com', 443, '/'), wild)
  assert.equal(table.match('example.com', 443, '/'), undefined)
  assert.equal(table.match('evilexample.com', 443, '/'), undefined)
})

test('a port in from matches only that port; no port matches any port', () => {
  const p = routeConfig({ id: 'p', from: host('app.example.com', 8443) })
  const any = routeConfig({ id: 'any', from: host('other.example.com') })
  const table = new RouteTable([p, any])
  assert.equal(table.match('app.example.com', 8443, '/'), p)
  assert.equal(table.match('app.example.com', 443, '/'), undefined)
  assert.equal(table.match('other.example.com', 1234, '/'), any)
})

test('10,000 routes: a lookup looks at the routes of the requested host only', () => {
  let inspected = 0
  // Count how many routes have their path rule examined during lookups.
  const counted = (r: RouteConfig): RouteConfig =>
    new Proxy(r, {
      get(target, prop, receiver) {
        if (prop === 'regexCompiled') inspected++
        return Reflect.get(target, prop, receiver) as unknown
      },
    })
  const routes = Array.from({ length: 10_000 }, (_, i) => counted(routeConfig({ index: i, id: String(i), from: host(`app${i}.example.com`) })))
  routes.push(counted(routeConfig({ id: 'wild', from: host('*.wild.example.com') })))
  const table = new RouteTable(routes)
  inspected = 0
  assert.equal(table.match('app9999.example.com', 443, '/'), routes[9999])
  assert.equal(table.match('app0.example.com', 443, '/'), routes[0])
  assert.equal(table.match('x.wild.example.com', 443, '/'), routes[10_000])
  assert.equal(table.match('nope.example.com', 443, '/'), undefined)
  assert.equal(inspected, 3)
})

test('the table can hold what the caller keeps per route: one lookup returns it', () => {
  const a = routeConfig({ index: 0, id: 'a', prefix: '/admin' })
  const b = routeConfig({ index: 1, id: 'b', from: { ...a.from, host: '*.example.com' } })
  const plans = [
    { route: a, name: 'plan-a' },
    { route: b, name: 'plan-b' },
  ]
  const table = new RouteTable(plans, (p) => p.route)
  assert.equal(table.match('app.example.com', 443, '/admin/x'), plans[0])
  assert.equal(table.match('other.example.com', 443, '/'), plans[1])
  assert.equal(table.match('app.example.com', 443, '/'), undefined)
})
