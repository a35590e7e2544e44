import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compileRoutePolicy } from '../policy/index.js'
import type { PolicySession, RouteAccess } from '../policy/index.js'
import { connectCommand, mayOpen, portalJson, portalRoutes, rootPath, routeNames, routeType, routeUrl } from './routes-portal.js'
import type { PortalCandidate, PortalOrigin, PortalRouteConfig, PortalViewer } from './routes-portal.js'

const NOW = new Date('2026-06-15T12:00:00Z')
const ORIGIN: PortalOrigin = { scheme: 'https', port: 8443 }

const session = (userId: string, email: string, claims: Record<string, unknown>): PolicySession => ({
  sessionId: `s-${userId}`,
  userId,
  email,
  emailVerified: true,
  claims: { email, ...claims },
})
const alice = session('u-alice', 'alice@example.com', { groups: ['admins', 'staff'], department: 'engineering' })
const bob = session('u-bob', 'bob@example.com', { groups: ['staff'] })

const viewer = (who: PolicySession | undefined, overrides: Partial<PortalViewer> = {}): PortalViewer => ({
  session: who,
  idpId: who ? 'idp-main' : undefined,
  clientIp: '192.0.2.10',
  now: NOW,
  ...overrides,
})

interface RouteSpec extends Partial<RouteAccess> {
  readonly from: string
  readonly name?: string
  readonly description?: string
  readonly logoUrl?: string
  readonly prefix?: string
  readonly path?: string
  readonly regex?: string
  readonly idpId?: string | null
}

let n = 0
function candidate(spec: RouteSpec): PortalCandidate {
  const m = /^([a-z+]+):\/\/([^/:]+)(?::(\d+))?$/.exec(spec.from)
  if (!m) throw new Error(`bad from ${spec.from}`)
  const port = m[3] === undefined ? undefined : Number(m[3])
  const route: PortalRouteConfig = {
    id: `id-${n++}`,
    name: spec.name,
    description: spec.description,
    logoUrl: spec.logoUrl,
    from: { scheme: m[1] as string, host: m[2] as string, port },
    fromUrl: spec.from,
    prefix: spec.prefix,
    path: spec.path,
    regex: spec.regex,
  }
  const access: RouteAccess = {
    allowPublicUnauthenticatedAccess: spec.allowPublicUnauthenticatedAccess ?? false,
    allowAnyAuthenticatedUser: spec.allowAnyAuthenticatedUser ?? false,
    corsAllowPreflight: spec.corsAllowPreflight ?? false,
    allowedUsers: spec.allowedUsers ?? [],
    allowedDomains: spec.allowedDomains ?? [],
    allowedIdpClaims: spec.allowedIdpClaims ?? {},
    policy: spec.policy,
  }
  const compiled = compileRoutePolicy(access, { path: 'routes[0]' })
  if (!compiled.policy) throw new Error(JSON.stringify(compiled.errors))
  return { route, policy: compiled.policy, idpId: spec.idpId === null ? undefined : (spec.idpId ?? 'idp-main') }
}

const ROUTES: PortalCandidate[] = [
  candidate({ from: 'https://wiki.example.com', name: 'Wiki', description: 'Team wiki', logoUrl: 'https://cdn.example.net/wiki.svg', allowedUsers: ['alice@example.com'] }),
  candidate({ from: 'https://admin.example.com', name: 'Admin', policy: { allow: { or: [{ 'claim/groups': 'admins' }] } } }),
  candidate({ from: 'https://staff.example.com', policy: { allow: { and: [{ domain: { is: 'example.com' } }, { groups: { has: 'staff' } }] } } }),
  candidate({ from: 'https://eng.example.com', allowedIdpClaims: { department: ['engineering'] } }),
  candidate({ from: 'https://status.example.com', name: 'Status', allowPublicUnauthenticatedAccess: true }),
  candidate({ from: 'https://locked.example.com', name: 'Locked' }),
  candidate({ from: 'https://rejected.example.com', policy: { allow: { or: [{ reject: true }] } } }),
  candidate({ from: 'https://most.example.com', policy: { allow: { or: [{ authenticated_user: true }] }, deny: { or: [{ email: { is: 'bob@example.com' } }] } } }),
  candidate({ from: 'https://office.example.com', policy: { allow: { and: [{ authenticated_user: true }, { source_ip: '10.0.0.0/8' }] } } }),
  candidate({ from: 'tcp+https://db.example.com:5432', name: 'Database', allowAnyAuthenticatedUser: true }),
  candidate({ from: 'https://*.apps.example.com', allowAnyAuthenticatedUser: true }),
  candidate({ from: 'https://partner.example.com', allowAnyAuthenticatedUser: true, idpId: 'idp-partner' }),
]

const listed = (v: PortalViewer, routes = ROUTES): string[] => portalRoutes(routes, v, ORIGIN).map((e) => e.json.from)

test('alice and bob see the routes their policies let them open, in config order', () => {
  assert.deepEqual(listed(viewer(alice)), [
    'https://wiki.example.com',
    'https://admin.example.com',
    'https://staff.example.com',
    'https://eng.example.com',
    'https://status.example.com',
    'https://most.example.com',
    'tcp+https://db.example.com:5432',
    'https://*.apps.example.com',
  ])
  // bob: not alice's allowed_users, not an admin, not in engineering, denied by email on `most`.
  assert.deepEqual(listed(viewer(bob)), ['https://staff.example.com', 'https://status.example.com', 'tcp+https://db.example.com:5432', 'https://*.apps.example.com'])
})

test('without a session only public routes are listed; deny-all routes never are', () => {
  assert.deepEqual(listed(viewer(undefined)), ['https://status.example.com'])
  for (const who of [alice, bob, undefined]) {
    const froms = listed(viewer(who))
    assert.ok(!froms.includes('https://locked.example.com') && !froms.includes('https://rejected.example.com'))
  }
})

test('the decision uses the viewer client IP and the route root path', () => {
  assert.ok(listed(viewer(alice, { clientIp: '10.1.2.3' })).includes('https://office.example.com'))
  assert.ok(!listed(viewer(alice, { clientIp: '10.1.2.3' }), ROUTES).includes('https://locked.example.com'))
  const adminOnly = candidate({ from: 'https://tools.example.com', prefix: '/admin/', policy: { allow: { and: [{ authenticated_user: true }, { http_path: { starts_with: '/admin' } }] } } })
  assert.equal(rootPath(adminOnly.route), '/admin/')
  assert.ok(mayOpen(adminOnly, viewer(bob)))
  const getOnly = candidate({ from: 'https://ro.example.com', policy: { allow: { and: [{ authenticated_user: true }, { http_method: { is: 'GET' } }] } } })
  assert.ok(mayOpen(getOnly, viewer(bob)))
})

test('a route that needs a client certificate is listed only when the portal request came with a matching one', () => {
  const fingerprint = 'ab'.repeat(32)
  const certRoute = candidate({ from: 'https://vault.example.com', policy: { allow: { and: [{ authenticated_user: true }, { client_certificate: { fingerprint } }] } } })
  const certificate = { presented: true, valid: true, fingerprintSha256: fingerprint, spkiSha256: 'x', sanDns: [], sanEmail: [], sanUri: [] }
  assert.ok(!mayOpen(certRoute, viewer(alice)), 'no certificate')
  assert.ok(mayOpen(certRoute, viewer(alice, { clientCertificate: certificate })))
  assert.ok(!mayOpen(certRoute, viewer(alice, { clientCertificate: { ...certificate, fingerprintSha256: 'cd'.repeat(32) } })), 'another certificate')
})

test('a session from another identity provider does not count on a route of that provider', () => {
  assert.ok(!listed(viewer(alice)).includes('https://partner.example.com'))
  assert.ok(listed(viewer(alice, { idpId: 'idp-partner' })).includes('https://partner.example.com'))
  const publicPartner = candidate({ from: 'https://open.partner.com', allowPublicUnauthenticatedAccess: true, idpId: 'idp-partner' })
  assert.ok(mayOpen(publicPartner, viewer(alice)), 'public routes are listed whatever the provider')
  const noIdp = candidate({ from: 'https://x.example.com', allowAnyAuthenticatedUser: true, idpId: null })
  assert.ok(!mayOpen(noIdp, viewer(alice)))
})

test('the JSON has Pomerium\'s shape: id, name, type, from, description, logo_url, connect_command for tunnels', () => {
  const body = portalJson(portalRoutes(ROUTES, viewer(alice), ORIGIN))
  const wiki = body.routes[0]
  assert.deepEqual(wiki, { id: ROUTES[0]?.route.id, name: 'Wiki', type: 'http', from: 'https://wiki.example.com', description: 'Team wiki', logo_url: 'https://cdn.example.net/wiki.svg' })
  const staff = body.routes.find((r) => r.from === 'https://staff.example.com')
  assert.equal(staff?.name, 'staff', 'a route without a name gets one from its host')
  assert.equal(staff?.description, '')
  assert.equal(staff?.logo_url, '')
  assert.ok(!('connect_command' in (staff ?? {})))
  const db = body.routes.find((r) => r.name === 'Database')
  assert.equal(db?.type, 'tcp')
  assert.equal(db?.connect_command, 'portcullis tcp db.example.com:5432')
  assert.deepEqual(JSON.parse(JSON.stringify(body)), body, 'plain JSON values')
})

test('route types and connect commands follow the from scheme', () => {
  const from = (scheme: string, host: string, port?: number): Pick<PortalRouteConfig, 'from'> => ({ from: { scheme, host, port } })
  assert.equal(routeType(from('https', 'a')), 'http')
  assert.equal(routeType(from('http', 'a')), 'http')
  assert.equal(routeType(from('tcp+https', 'a', 22)), 'tcp')
  assert.equal(routeType(from('udp+https', 'a', 53)), 'udp')
  assert.equal(routeType(from('ssh', 'a')), 'ssh')
  assert.equal(connectCommand(from('udp+https', 'dns.example.com', 53)), 'portcullis udp dns.example.com:53')
  assert.equal(connectCommand(from('https', 'a')), undefined)
  assert.equal(connectCommand(from('ssh', 'a')), undefined)
})

test('links: the portal port when from has none, the route prefix or path, none for wildcards and tunnels', () => {
  const at = (spec: RouteSpec, origin = ORIGIN): string | undefined => routeUrl(candidate(spec).route, origin)
  assert.equal(at({ from: 'https://app.example.com' }), 'https://app.example.com:8443/')
  assert.equal(at({ from: 'https://app.example.com' }, { scheme: 'https', port: undefined }), 'https://app.example.com/')
  assert.equal(at({ from: 'https://app.example.com:9443' }), 'https://app.example.com:9443/')
  assert.equal(at({ from: 'https://app.example.com:443' }), 'https://app.example.com/')
  assert.equal(at({ from: 'http://plain.example.com' }), 'http://plain.example.com/', 'another scheme: its default port')
  assert.equal(at({ from: 'https://app.example.com', prefix: '/admin/' }), 'https://app.example.com:8443/admin/')
  assert.equal(at({ from: 'https://app.example.com', path: '/exact' }), 'https://app.example.com:8443/exact')
  assert.equal(at({ from: 'https://app.example.com', regex: '^/v[0-9]+/.*' }), 'https://app.example.com:8443/')
  assert.equal(at({ from: 'https://*.example.com' }), undefined)
  assert.equal(at({ from: 'tcp+https://db.example.com:5432' }), undefined)
  const entries = portalRoutes(ROUTES, viewer(alice), ORIGIN)
  assert.equal(entries.find((e) => e.json.from === 'https://*.apps.example.com')?.url, undefined)
  assert.equal(entries.find((e) => e.json.from === 'https://*.apps.example.com')?.title, 'https://*.apps.example.com', 'no name: the title is from')
  assert.equal(entries[0]?.title, 'Wiki')
})

test('generated names are unique and stable; configured names are kept', () => {
  const routes = [
    candidate({ from: 'https://grafana.example.com' }),
    candidate({ from: 'https://grafana.example.com', prefix: '/admin/' }),
    candidate({ from: 'tcp+https://augur.example.com:22' }),
    candidate({ from: 'tcp+https://augur.example.com:3306' }),
    candidate({ from: 'https://app.one.com' }),
    candidate({ from: 'https://app.two.com' }),
    candidate({ from: 'https://app.two.com' }),
    candidate({ from: 'https://named.example.com', name: 'grafana-admin' }),
    candidate({ from: 'https://*.wild.example.com' }),
  ].map((c) => c.route)
  const names = routeNames(routes)
  assert.deepEqual(names, ['grafana', 'grafana-example-com-admin', 'augur-22', 'augur-3306', 'app-one-com', 'app-two-com', 'app-two-com (2)', 'grafana-admin', 'wild'])
  assert.equal(new Set(names).size, names.length)
  // The same route keeps its name in every viewer's list.
  const c = [candidate({ from: 'https://a.example.com', allowedUsers: ['alice@example.com'] }), candidate({ from: 'https://a.example.com', prefix: '/x/', allowAnyAuthenticatedUser: true })]
  assert.equal(portalRoutes(c, viewer(alice), ORIGIN)[1]?.json.name, portalRoutes(c, viewer(bob), ORIGIN)[0]?.json.name)
})
