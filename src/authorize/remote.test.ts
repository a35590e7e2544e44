import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { loadYaml } from '../config/test-helpers.js'
import type { RouteConfig } from '../config/types.js'
import { internalErrorAnswer } from '../databroker/server.js'
import { ServicePool, startInternalServer } from '../internal/index.js'
import type { InternalServer } from '../internal/index.js'
import { createLogger } from '../shared/log.js'
import type { SessionRefresher } from '../session/refresher.js'
import type { SessionStore } from '../session/session-store.js'
import type { AuthSettings } from '../session/settings.js'
import type { Secrets } from '../shared/secrets.js'
import { buildAuthorizePlans } from './plans.js'
import { createPolicyAuthorizer } from './policy-authorizer.js'
import { AUTHORIZE_CHECK_PATH, authorizeRoutes, createRemoteAuthorizer, decodeCheckRequest, decodeCheckResult, encodeCheckRequest, findRoute } from './remote.js'
import type { Authorizer, CheckRequest, CheckResult } from './types.js'

const logger = createLogger('disabled')
const { config } = loadYaml(
  ['routes:', '  - from: https://a.example.com', '    to: http://127.0.0.1:1', '  - from: https://b.example.com', '    to: http://127.0.0.1:2', '    allow_public_unauthenticated_access: true'].join('\n'),
)
const routes = config?.routes as readonly RouteConfig[]
const [routeA, routeB] = routes as [RouteConfig, RouteConfig]

function check(route: RouteConfig, extra: Partial<CheckRequest> = {}): CheckRequest {
  return {
    requestId: 'req-1',
    route,
    method: 'GET',
    host: route.from.host,
    authority: route.from.host,
    path: '/x',
    query: '?y=1',
    headers: { cookie: '_pomerium=abc', 'x-multi': ['1', '2'] },
    clientIp: '192.0.2.1',
    scheme: 'https',
    ...extra,
  }
}

const servers: InternalServer[] = []
after(async () => {
  for (const s of servers) await s.close()
})

async function serve(authorizer: Authorizer, sharedSecret: Buffer, list: readonly RouteConfig[] = routes): Promise<InternalServer> {
  const server = await startInternalServer({ address: '127.0.0.1:0', sharedSecret, logger, routes: authorizeRoutes({ authorizer, routes: () => list }), mapError: internalErrorAnswer })
  servers.push(server)
  return server
}

describe('the authorize service over the internal API', () => {
  it('carries a check and its answer unchanged, the route by position and id', async () => {
    const secret = randomBytes(32)
    const seen: CheckRequest[] = []
    const answer: CheckResult = { allow: true, setHeaders: { 'x-pomerium-jwt-assertion': 'jwt' }, removeHeaders: ['x-a'], setMultiHeaders: { 'impersonate-group': ['a', 'b'] }, routingKey: 's1' }
    const server = await serve({ check: (r) => (seen.push(r), answer) }, secret)
    const remote = createRemoteAuthorizer({ urls: [server.url], sharedSecret: secret, logger })
    try {
      assert.deepEqual(await remote.check(check(routeB)), answer)
      assert.equal(seen[0]?.route, routeB)
      assert.deepEqual({ ...seen[0], route: undefined }, { ...check(routeB), route: undefined })
    } finally {
      remote.close()
    }
  })

  it('refuses a route it does not know (different configurations) instead of guessing', async () => {
    const secret = randomBytes(32)
    const server = await serve({ check: () => ({ allow: true }) }, secret, [routeA])
    const remote = createRemoteAuthorizer({ urls: [server.url], sharedSecret: secret, logger })
    try {
      const result = await remote.check(check(routeB))
      assert.equal(result.allow, false)
      assert.equal(result.allow === false && result.status, 503)
      assert.match(result.allow === false ? result.reason : '', /different configurations/)
    } finally {
      remote.close()
    }
  })

  it('fails closed: unreachable, wrong shared secret, malformed answer', async () => {
    const secret = randomBytes(32)
    const allowAll = await serve({ check: () => ({ allow: true }) }, secret)
    const malformed = await serve({ check: () => ({ allow: 'yes' }) as unknown as CheckResult }, secret)
    const closed = await serve({ check: () => ({ allow: true }) }, secret)
    await closed.close()
    for (const [name, url, key] of [
      ['unreachable', closed.url, secret],
      ['wrong secret', allowAll.url, randomBytes(32)],
      ['malformed', malformed.url, secret],
    ] as const) {
      const remote = createRemoteAuthorizer({ urls: [url], sharedSecret: key, logger })
      try {
        const result = await remote.check(check(routeA))
        assert.equal(result.allow, false, name)
        assert.equal(result.allow === false && result.status, 503, name)
      } finally {
        remote.close()
      }
    }
  })

  it('fails over to the next URL when one is down', async () => {
    const secret = randomBytes(32)
    const down = await serve({ check: () => ({ allow: true }) }, secret)
    await down.close()
    const up = await serve({ check: () => ({ allow: true, routingKey: 'up' }) }, secret)
    const remote = createRemoteAuthorizer({ urls: [down.url, up.url], sharedSecret: secret, logger })
    try {
      for (let i = 0; i < 4; i++) assert.deepEqual(await remote.check(check(routeA)), { allow: true, routingKey: 'up' })
    } finally {
      remote.close()
    }
  })
})

describe('wire checks', () => {
  it('finds a route by position and id, else by id, never by position alone', () => {
    assert.equal(findRoute(routes, 1, routeB.id), routeB)
    assert.equal(findRoute(routes, 0, routeB.id), routeB)
    assert.equal(findRoute(routes, 1, 'other'), undefined)
    assert.equal(findRoute(routes, 1, undefined), undefined)
  })

  it('refuses malformed requests', () => {
    const good = encodeCheckRequest(check(routeA))
    assert.deepEqual(decodeCheckRequest(JSON.parse(JSON.stringify(good)), routeA), check(routeA))
    for (const broken of [
      { ...good, scheme: 'ftp' },
      { ...good, path: 3 },
      { ...good, headers: { cookie: 5 } },
      { ...good, headers: [] },
      { ...good, clientCertificate: { presented: true } },
      'text',
    ]) {
      assert.throws(() => decodeCheckRequest(broken, routeA), /must|malformed/)
    }
  })

  it('carries a tunnel\'s token hosts and the allowed user across the wire; malformed ones are refused', () => {
    const tunnel = { ...check(routeA), method: 'CONNECT', tokenHosts: ['proxy.example.com', '10.0.0.1'] }
    assert.deepEqual(decodeCheckRequest(JSON.parse(JSON.stringify(encodeCheckRequest(tunnel))), routeA), tunnel)
    assert.throws(() => decodeCheckRequest({ ...encodeCheckRequest(tunnel), tokenHosts: 'proxy.example.com' }, routeA), /tokenHosts/)
    assert.deepEqual(decodeCheckResult({ allow: true, user: 'ada@example.com' }), { allow: true, user: 'ada@example.com' })
    assert.equal(decodeCheckResult({ allow: true, user: 7 }), undefined)
  })

  it('accepts only well-formed results', () => {
    assert.deepEqual(decodeCheckResult({ allow: true }), { allow: true })
    assert.ok(decodeCheckResult({ allow: false, status: 302, code: 'sign-in', reason: 'sign in', location: 'https://x' }))
    const denial = {
      allow: false,
      status: 403,
      code: 'policy-denied',
      reason: 'no',
      reasons: ['the email is not one this route admits'],
      policyReasons: ['email-unauthorized'],
      user: 'bob@example.com',
      route: 'Admin',
      details: 'allow: false',
      headers: { 'set-cookie': 'a=b' },
    }
    assert.deepEqual(decodeCheckResult(JSON.parse(JSON.stringify(denial))), denial)
    for (const bad of [
      null,
      { allow: 'true' },
      { allow: true, setHeaders: { a: 1 } },
      { allow: true, setMultiHeaders: { a: 'b' } },
      { allow: false, status: 99, code: 'policy-denied', reason: 'x' },
      { allow: false, status: 403, code: 'policy-denied' },
      { allow: false, status: 403, code: 5, reason: 'x' },
      { allow: false, status: 403, code: 'policy-denied', reason: 'x', headers: { a: ['b'] } },
      { allow: false, status: 403, code: 'policy-denied', reason: 'x', reasons: 'one' },
      { allow: false, status: 403, code: 'policy-denied', reason: 'x', policyReasons: [1] },
      { allow: false, status: 403, code: 'policy-denied', reason: 'x', user: { email: 'x' } },
    ]) {
      assert.equal(decodeCheckResult(bad), undefined, JSON.stringify(bad))
    }
  })

  it('never passes on a rendered body, and reads a code it does not know as a plain denial', () => {
    assert.deepEqual(decodeCheckResult({ allow: false, status: 403, code: 'policy-denied', reason: 'x', body: { contentType: 'text/html', text: '<script>' } }), {
      allow: false,
      status: 403,
      code: 'policy-denied',
      reason: 'x',
    })
    assert.deepEqual(decodeCheckResult({ allow: false, status: 429, code: 'rate-limited', reason: 'slow down' }), { allow: false, status: 429, code: 'denied', reason: 'slow down' })
    // The device denial keeps its code across the wire (an unknown code would become 'denied').
    const device = { allow: false, status: 450, code: 'device-denied', reason: 'not from this device', policyReasons: ['device-unauthorized'] }
    assert.deepEqual(decodeCheckResult(JSON.parse(JSON.stringify(device))), device)
    assert.deepEqual(decodeCheckResult({ allow: false, status: 403, reason: 'x' }), { allow: false, status: 403, code: 'denied', reason: 'x' })
  })
})

describe('a denial over the internal API', () => {
  it('is data: the status, a code and the reasons in words, no HTML', async () => {
    const { config: adminConfig } = loadYaml(
      [
        'routes:',
        '  - from: https://admin.example.com',
        '    to: http://127.0.0.1:1',
        '    name: Admin console',
        '    policy:',
        '      allow:',
        '        and:',
        '          - http_path: {is: /only-this}',
      ].join('\n'),
    )
    assert.ok(adminConfig)
    const plans = buildAuthorizePlans(adminConfig, { logger })
    const authorizer = createPolicyAuthorizer({
      settings: () => ({ enabled: false }) as unknown as AuthSettings,
      plans: () => plans,
      secrets: {} as unknown as Secrets,
      sessions: {} as unknown as SessionStore,
      refresher: {} as unknown as SessionRefresher,
      logger,
    })
    const secret = randomBytes(32)
    const server = await serve(authorizer, secret, adminConfig.routes)
    const pool = new ServicePool({ service: 'authorize', urls: [server.url], sharedSecret: secret, logger })
    try {
      const [route] = adminConfig.routes as [RouteConfig]
      // What a browser would send: it prefers HTML, and still gets data.
      const request = check(route, { path: '/x', query: '', headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } })
      const raw = await pool.call(AUTHORIZE_CHECK_PATH, encodeCheckRequest(request), 5000, 'always')
      const text = JSON.stringify(raw)
      assert.doesNotMatch(text, /<[a-z!/]/i, 'no markup in the answer')
      assert.deepEqual(raw, {
        allow: false,
        status: 403,
        code: 'policy-denied',
        reason: 'You are not allowed to open this app: its access policy did not admit this request.',
        reasons: describedReasons(raw),
        policyReasons: ['http-path-unauthorized'],
        route: 'Admin console',
      })
      assert.ok(describedReasons(raw).length > 0 && describedReasons(raw).every((r) => r.includes('path')), text)
    } finally {
      pool.close()
    }
  })
})

function describedReasons(raw: unknown): string[] {
  const reasons = (raw as { reasons?: unknown }).reasons
  return Array.isArray(reasons) ? reasons.map(String) : []
}
