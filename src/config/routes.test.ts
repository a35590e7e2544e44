import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { RouteConfig } from './types.js'
import { errors, loadYaml, testPem, warnings } from './test-helpers.js'

/** Loads one route (YAML lines indented under `- `) and returns it, failing on errors. */
function route(lines: string[], globals = ''): RouteConfig {
  const yaml = `${globals}routes:\n  - ${lines.join('\n    ')}\n`
  const { config, issues } = loadYaml(yaml)
  assert.deepEqual(errors(issues), [], yaml)
  const r = config?.routes[0]
  assert.ok(r)
  return r
}

/** Loads one route expecting errors; returns them as [path, message]. */
function routeErrors(lines: string[]): [string, string][] {
  const { config, issues } = loadYaml(`routes:\n  - ${lines.join('\n    ')}\n`)
  assert.equal(config, undefined)
  return errors(issues).map((i) => [i.path, i.message])
}

test('from: scheme, lower-cased host, trailing dot, explicit port, wildcards', () => {
  const r = route(['from: https://App.Example.COM.', 'to: http://127.0.0.1:8080'])
  assert.deepEqual(r.from, { scheme: 'https', host: 'app.example.com', port: undefined })
  assert.equal(r.fromUrl, 'https://app.example.com')
  assert.deepEqual(route(['from: https://a.example.com:443/', 'to: http://b']).from.port, 443)
  assert.equal(route(['from: https://*.example.com', 'to: http://b']).from.host, '*.example.com')
  assert.equal(route(['from: tcp+https://db.example.com:5432', 'to: tcp://db:5432']).from.scheme, 'tcp+https')
  assert.equal(route(['from: http://a.example.com', 'to: http://b']).from.scheme, 'http')
  for (const bad of ['ftp://x', 'https://a.example.com/path', 'https://', 'a.example.com', 'https://a.example.com?q=1', 'https://u@a.example.com']) {
    const errs = routeErrors([`from: "${bad}"`, 'to: http://b'])
    assert.equal(errs[0]?.[0], 'routes[0].from', bad)
    assert.match(errs[0]?.[1] ?? '', /expected an https:\/\/ URL with a host and no path/)
  }
  assert.deepEqual(routeErrors(['to: http://b']).map((e) => e[0]), ['routes[0].from'])
})

test('to: single URL, list, weights, schemes, mixing', () => {
  const r = route(['from: https://a.example.com', 'to: ["http://a:1,3", "https://b:2, 1", "h2c://c:3,2"]'])
  assert.deepEqual(r.to.map((t) => [t.url.href, t.weight]), [
    ['http://a:1/', 3],
    ['https://b:2/', 1],
    ['h2c://c:3', 2],
  ])
  assert.deepEqual(route(['from: https://a.example.com', 'to: [http://a, http://b]']).to.map((t) => t.weight), [1, 1])
  // As Pomerium: weights are all or none.
  assert.deepEqual(routeErrors(['from: https://a.example.com', 'to: ["http://a,3", http://b]']), [
    ['routes[0].to', 'either every upstream URL has a weight ("url,weight") or none has'],
  ])
  assert.equal(route(['from: https://a.example.com', 'to: http://a']).to.length, 1)
  assert.deepEqual(routeErrors(['from: https://a.example.com', 'to: gopher://x'])[0]?.[0], 'routes[0].to')
  assert.deepEqual(routeErrors(['from: https://a.example.com', 'to: ["http://a", "http://b,zero"]'])[0]?.[0], 'routes[0].to[1]')
  assert.match(routeErrors(['from: https://a.example.com', 'to: [http://a, tcp://b:1]'])[0]?.[1] ?? '', /cannot mix/)
  assert.deepEqual(routeErrors(['from: https://a.example.com', 'to: []'])[0]?.[0], 'routes[0].to')
  const { issues } = loadYaml('routes:\n  - from: ssh://a.example.com\n    to: ssh://a:22\n')
  assert.match(warnings(issues)[0]?.message ?? '', /not supported yet/)
})

test('tunnel routes: tcp+https and udp+https take a port, tcp:// / udp:// (or for tcp an http proxy) upstreams, no paths', () => {
  const tcp = route(['from: tcp+https://db.example.com:5432', 'to: [tcp://10.0.0.5:5432, tcp://10.0.0.6:5432]'])
  assert.deepEqual(tcp.to.map((t) => t.url.href), ['tcp://10.0.0.5:5432', 'tcp://10.0.0.6:5432'])
  assert.equal(tcp.timeoutMs, 0, 'tunnels have no request timeout unless one is set')
  assert.equal(route(['from: tcp+https://db.example.com:5432', 'to: http://corp-proxy:3128']).to[0]?.url.protocol, 'http:')
  assert.equal(route(['from: udp+https://dns.example.com:53', 'to: udp://10.0.0.53:53']).from.scheme, 'udp+https')
  const { issues } = loadYaml('routes:\n  - from: tcp+https://a.example.com:22\n    to: tcp://a:22\n')
  assert.deepEqual(warnings(issues).filter((w) => w.path.startsWith('routes')), [])
  // tcp_health_check is in effect: no "accepted but not in effect" warning names it.
  const checked = loadYaml('routes:\n  - from: tcp+https://a.example.com:22\n    to: tcp://a:22\n    health_checks: [{tcp_health_check: {}}]\n')
  assert.ok(!warnings(checked.issues).some((w) => w.message.includes('tcp_health_check')), JSON.stringify(warnings(checked.issues)))
  assert.match(routeErrors(['from: tcp+https://db.example.com', 'to: tcp://db:5432'])[0]?.[1] ?? '', /host:port/)
  assert.match(routeErrors(['from: tcp+https://db.example.com:5432', 'to: tcp://db'])[0]?.[1] ?? '', /with a port/)
  assert.match(routeErrors(['from: udp+https://dns.example.com:53', 'to: tcp://db:53'])[0]?.[1] ?? '', /udp:\/\/host:port/)
  assert.match(routeErrors(['from: tcp+https://db.example.com:5432', 'to: udp://db:5432'])[0]?.[1] ?? '', /tcp:\/\/host:port/)
  assert.deepEqual(routeErrors(['from: tcp+https://db.example.com:5432', 'to: tcp://db:5432', 'prefix: /x'])[0]?.[0], 'routes[0].prefix')
  assert.match(routeErrors(['from: tcp+https://*.example.com:5432', 'to: tcp://db:5432'])[0]?.[1] ?? '', /wildcard/)
  assert.match(routeErrors(['from: https://a.example.com', 'to: tcp://db:5432'])[0]?.[1] ?? '', /tunnel route/)
})

test('exactly one of to, redirect or response', () => {
  assert.match(routeErrors(['from: https://a.example.com'])[0]?.[1] ?? '', /one of to, redirect or response/)
  assert.match(routeErrors(['from: https://a.example.com', 'to: http://a', 'response: {status: 200}'])[0]?.[1] ?? '', /mutually exclusive/)
  const redirect = route(['from: https://a.example.com', 'redirect: {host_redirect: b.example.com, strip_query: true}'])
  assert.deepEqual(redirect.redirect, {
    httpsRedirect: undefined,
    schemeRedirect: undefined,
    hostRedirect: 'b.example.com',
    portRedirect: undefined,
    pathRedirect: undefined,
    prefixRewrite: undefined,
    responseCode: 301,
    stripQuery: true,
  })
  assert.deepEqual(route(['from: https://a.example.com', 'response: {status: 418, body: teapot}']).response, { status: 418, body: 'teapot' })
  assert.equal(routeErrors(['from: https://a.example.com', 'redirect: {response_code: 200}'])[0]?.[0], 'routes[0].redirect.response_code')
})

test('regex is compiled anchored; RE2 named groups work; rewrite options are exclusive', () => {
  const r = route(['from: https://a.example.com', 'to: http://a', 'regex: "/api/(?P<v>v[0-9])/.*"'])
  assert.ok(r.regexCompiled?.test('/api/v1/users'))
  assert.ok(!r.regexCompiled?.test('/x/api/v1/users'))
  assert.ok(!route(['from: https://a.example.com', 'to: http://a', 'regex: /a|/b']).regexCompiled?.test('/a/c'))
  assert.match(routeErrors(['from: https://a.example.com', 'to: http://a', 'regex: "(["'])[0]?.[1] ?? '', /invalid regular expression/)
  assert.equal(
    routeErrors(['from: https://a.example.com', 'to: http://a', 'prefix_rewrite: /x', 'regex_rewrite_pattern: ^/y'])[0]?.[0],
    'routes[0].regex_rewrite_pattern',
  )
  const rw = route(['from: https://a.example.com', 'to: http://a', 'regex_rewrite_pattern: ^/old/(.*)$', 'regex_rewrite_substitution: /new/\\1'])
  assert.equal(rw.regexRewritePattern?.source, '^/old/(.*)$')
  assert.equal(rw.regexRewriteSubstitution, '/new/\\1')
  assert.equal(routeErrors(['from: https://a.example.com', 'to: http://a', 'prefix: api'])[0]?.[0], 'routes[0].prefix')
})

test('load_balancing_policy and health_checks', () => {
  assert.equal(route(['from: https://a.example.com', 'to: http://a']).loadBalancingPolicy, 'ROUND_ROBIN')
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'load_balancing_policy: maglev']).loadBalancingPolicy, 'MAGLEV')
  assert.equal(routeErrors(['from: https://a.example.com', 'to: http://a', 'load_balancing_policy: FASTEST'])[0]?.[0], 'routes[0].load_balancing_policy')
  const r = route([
    'from: https://a.example.com',
    'to: http://a',
    'health_checks:',
    '  - timeout: 2s',
    '    interval: 1m',
    '    unhealthy_threshold: 3',
    '    healthy_threshold: 2',
    '    http_health_check: {host: h.example.com, path: /healthz, expected_statuses: [{start: 200, end: 300}]}',
    '  - tcp_health_check: {send: {text: "00"}}',
  ])
  assert.deepEqual(r.healthChecks[0], {
    timeoutMs: 2000,
    intervalMs: 60_000,
    unhealthyThreshold: 3,
    healthyThreshold: 2,
    http: { host: 'h.example.com', path: '/healthz', expectedStatuses: [[200, 300]] },
    tcp: undefined,
  })
  assert.equal(r.healthChecks[1]?.http, undefined)
  assert.deepEqual(r.healthChecks[1]?.tcp, { send: Buffer.from([0]), receive: [] })
  const withReceive = route(['from: tcp+https://db.example.com:5432', 'to: tcp://db:5432', 'health_checks: [{tcp_health_check: {send: {text: "50494e470d0a"}, receive: [{text: "2b504f4e47"}]}}]'])
  assert.deepEqual(withReceive.healthChecks[0]?.tcp, { send: Buffer.from('PING\r\n'), receive: [Buffer.from('+PONG')] })
  assert.equal(routeErrors(['from: tcp+https://db.example.com:5432', 'to: tcp://db:5432', 'health_checks: [{tcp_health_check: {send: {text: "xyz"}}}]'])[0]?.[0], 'routes[0].health_checks[0].tcp_health_check.send')
  // Envoy's logging switches are known keys (no unknown-setting warning).
  const logged = loadYaml('routes:\n  - from: https://a.example.com\n    to: http://a\n    health_checks:\n      - http_health_check: {}\n        always_log_health_check_success: true\n        always_log_health_check_failures: true\n')
  assert.deepEqual(warnings(logged.issues).filter((i) => /unknown setting/.test(i.message)), [])
  const { issues } = loadYaml('routes:\n  - from: https://a.example.com\n    to: http://a\n    health_checks:\n      - grpc_health_check: {}\n')
  assert.match(warnings(issues)[0]?.message ?? '', /not supported yet/)
  assert.equal(
    routeErrors(['from: https://a.example.com', 'to: http://a', 'health_checks: [{http_health_check: {expected_statuses: [{start: 300, end: 200}]}}]'])[0]?.[0],
    'routes[0].health_checks[0].http_health_check.expected_statuses[0]',
  )
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'health_checks: [{http_health_check: {}}]']).healthChecks[0]?.http?.expectedStatuses[0]?.[1], 201)
})

test('timeouts: default_upstream_timeout, 0 for upgrade routes, idle_timeout', () => {
  assert.equal(route(['from: https://a.example.com', 'to: http://a']).timeoutMs, 30_000)
  assert.equal(route(['from: https://a.example.com', 'to: http://a'], 'default_upstream_timeout: 10s\n').timeoutMs, 10_000)
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'timeout: 5s']).timeoutMs, 5000)
  const ws = route(['from: https://a.example.com', 'to: http://a', 'allow_websockets: true'])
  assert.equal(ws.timeoutMs, 0)
  assert.equal(ws.idleTimeoutMs, 0)
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'allow_spdy: true']).timeoutMs, 0)
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'kubernetes_service_account_token: abc']).timeoutMs, 0)
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'allow_websockets: true', 'timeout: 1s']).timeoutMs, 1000)
  assert.equal(route(['from: https://a.example.com', 'to: http://a', 'idle_timeout: 1m']).idleTimeoutMs, 60_000)
})

test('allowedUpgrades: route list else global, lower-cased, plus websocket/spdy', () => {
  assert.deepEqual(route(['from: https://a.example.com', 'to: http://a', 'allow_websockets: true', 'allow_spdy: true']).allowedUpgrades, ['websocket', 'spdy/3.1'])
  assert.deepEqual(route(['from: https://a.example.com', 'to: http://a'], 'allow_upgrades: [H2C-Custom]\n').allowedUpgrades, ['h2c-custom'])
  assert.deepEqual(
    route(['from: https://a.example.com', 'to: http://a', 'allow_upgrades: [Foo]', 'allow_websockets: true'], 'allow_upgrades: [bar]\n').allowedUpgrades,
    ['foo', 'websocket'],
  )
})

test('circuit_breaker_thresholds: Envoy defaults, global values, route values field by field', () => {
  const base = ['from: https://a.example.com', 'to: http://b']
  assert.deepEqual(route(base).circuitBreakers, { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024 })
  const globals = 'circuit_breaker_thresholds: {max_connections: 10, max_requests: 50}\n'
  assert.deepEqual(route(base, globals).circuitBreakers, { maxConnections: 10, maxPendingRequests: 1024, maxRequests: 50 })
  assert.deepEqual(route([...base, 'circuit_breaker_thresholds: {max_pending_requests: 0, max_requests: 7}'], globals).circuitBreakers, {
    maxConnections: 10,
    maxPendingRequests: 0,
    maxRequests: 7,
  })
  // No connection at all would leave every request waiting: one is always allowed.
  assert.equal(route([...base, 'circuit_breaker_thresholds: {max_connections: 0}']).circuitBreakers.maxConnections, 1)
  assert.deepEqual(
    routeErrors(['from: https://a.example.com', 'to: http://b', 'circuit_breaker_thresholds: {max_requests: -1}']).map((e) => e[0]),
    ['routes[0].circuit_breaker_thresholds.max_requests'],
  )
})

test('upstream TLS: server name alias, client cert pairs, custom CA', () => {
  const b64 = (name: string) => Buffer.from(testPem(name)).toString('base64')
  const r = route(['from: https://a.example.com', 'to: https://a', 'tls_upstream_server_name: up.example.com', `tls_custom_ca: ${b64('a.cert.pem')}`, `tls_client_cert: ${b64('b.cert.pem')}`, `tls_client_key: ${b64('b.key.pem')}`, 'tls_skip_verify: true'])
  assert.deepEqual(r.tls, { skipVerify: true, serverName: 'up.example.com', customCa: testPem('a.cert.pem'), clientCert: testPem('b.cert.pem'), clientKey: testPem('b.key.pem') })
  assert.equal(route(['from: https://a.example.com', 'to: https://a', 'tls_server_name: old.example.com']).tls.serverName, 'old.example.com')
  assert.deepEqual(routeErrors(['from: https://a.example.com', 'to: https://a', `tls_client_cert: ${b64('b.cert.pem')}`]).map((e) => e[0]), ['routes[0].tls_client_key'])
  assert.match(routeErrors(['from: https://a.example.com', 'to: https://a', `tls_client_cert: ${b64('b.cert.pem')}`, `tls_client_key: ${b64('a.key.pem')}`])[0]?.[1] ?? '', /does not match/)
  assert.match(routeErrors(['from: https://a.example.com', 'to: https://a', 'tls_custom_ca: bm90IGEgcGVt'])[0]?.[1] ?? '', /base64-encoded PEM/)
})

test('tls _file variants are read relative to the config file', () => {
  const { config, issues } = loadYaml(
    'routes:\n  - from: https://a.example.com\n    to: https://a\n    tls_client_cert_file: c.pem\n    tls_client_key_file: k.pem\n',
    {},
    { 'c.pem': testPem('a.cert.pem'), 'k.pem': testPem('a.key.pem') },
  )
  assert.deepEqual(errors(issues), [])
  assert.equal(config?.routes[0]?.tls.clientKey, testPem('a.key.pem'))
  assert.equal(config?.source.referencedFiles.length, 2)
})

test('access control combinations (Pomerium docs: Access-control)', () => {
  assert.equal(
    routeErrors(['from: https://a.example.com', 'to: http://a', 'allow_public_unauthenticated_access: true', 'allowed_users: [a@example.com]'])[0]?.[0],
    'routes[0].allow_public_unauthenticated_access',
  )
  assert.equal(
    routeErrors(['from: https://a.example.com', 'to: http://a', 'allow_public_unauthenticated_access: true', 'allow_any_authenticated_user: true'])[0]?.[0],
    'routes[0].allow_public_unauthenticated_access',
  )
  assert.equal(
    routeErrors(['from: https://a.example.com', 'to: http://a', 'allow_any_authenticated_user: true', 'allowed_domains: [example.com]'])[0]?.[0],
    'routes[0].allow_any_authenticated_user',
  )
  const r = route(['from: https://a.example.com', 'to: http://a', 'allowed_users: [a@example.com]', 'allowed_idp_claims: {groups: admins}', 'policy: {allow: {or: [{email: {is: x@example.com}}]}}', 'cors_allow_preflight: true'])
  assert.deepEqual(r.allowedUsers, ['a@example.com'])
  assert.deepEqual(r.allowedIdpClaims, { groups: ['admins'] })
  assert.deepEqual(r.policy, { allow: { or: [{ email: { is: 'x@example.com' } }] } })
  assert.equal(r.corsAllowPreflight, true)
  assert.equal(r.passIdentityHeaders, false)
  assert.equal(route(['from: https://a.example.com', 'to: http://a'], 'pass_identity_headers: true\n').passIdentityHeaders, true)
})

test('headers: set/remove request headers, rewrite response headers, Host cannot be set', () => {
  const r = route(['from: https://a.example.com', 'to: http://a', 'set_request_headers: {X-A: "1", X-B: b}', 'remove_request_headers: [X-C]', 'rewrite_response_headers: [{header: Location, prefix: "http://a/", value: "https://a.example.com/"}]'])
  assert.deepEqual(r.setRequestHeaders, { 'X-A': '1', 'X-B': 'b' })
  assert.deepEqual(r.removeRequestHeaders, ['X-C'])
  assert.deepEqual(r.rewriteResponseHeaders, [{ header: 'Location', prefix: 'http://a/', value: 'https://a.example.com/' }])
  assert.equal(routeErrors(['from: https://a.example.com', 'to: http://a', 'set_request_headers: {Host: x}'])[0]?.[0], 'routes[0].set_request_headers.Host')
  assert.equal(routeErrors(['from: https://a.example.com', 'to: http://a', 'set_request_headers: {"Bad Name": x}'])[0]?.[0], 'routes[0].set_request_headers.Bad Name')
})

test('route ids are stable and depend on from/prefix/path/regex/destination only', () => {
  const a = route(['from: https://a.example.com', 'to: http://a', 'name: one'])
  const b = route(['from: https://a.example.com', 'to: http://a', 'name: two', 'allow_websockets: true'])
  const c = route(['from: https://a.example.com', 'to: http://a', 'prefix: /x'])
  const d = route(['from: https://a.example.com', 'to: http://other'])
  assert.match(a.id, /^[0-9a-f]{16}$/)
  assert.equal(a.id, b.id)
  assert.notEqual(a.id, c.id)
  assert.notEqual(a.id, d.id)
})

test('policy: alias and routes are concatenated; index counts across both', () => {
  const { config } = loadYaml('policy:\n  - from: https://a.example.com\n    to: http://a\nroutes:\n  - from: https://b.example.com\n    to: http://b\n')
  assert.deepEqual(config?.routes.map((r) => [r.index, r.from.host]), [
    [0, 'a.example.com'],
    [1, 'b.example.com'],
  ])
  assert.equal(config?.raw['routes'], undefined)
})

test('allow_ambiguous_paths: false unless set to true; a non-boolean is an error naming the key', () => {
  assert.equal(route(['from: https://a.example.com', 'to: http://b']).allowAmbiguousPaths, false)
  assert.equal(route(['from: https://a.example.com', 'to: http://b', 'allow_ambiguous_paths: true']).allowAmbiguousPaths, true)
  assert.deepEqual(routeErrors(['from: https://a.example.com', 'to: http://b', 'allow_ambiguous_paths: sometimes']).map((e) => e[0]), ['routes[0].allow_ambiguous_paths'])
})
