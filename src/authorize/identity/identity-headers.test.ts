import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { routeConfig } from '../../../test/fixtures/route-config.js'
import type { Session, User } from '../../session/session-store.js'
import type { Config, RouteConfig } from '../../config/types.js'
import type { IdentitySession } from './assertion.js'
import { createIdentityHeaders, identityConfigIssues, identityOptionsFromConfig, identitySession, jwksResponse } from './identity-headers.js'
import type { IdentityHeadersOptions } from './identity-headers.js'
import { loadSigningKeys } from '../../shared/signing-keys.js'

const keys = loadSigningKeys(undefined, Buffer.alloc(32, 3))
const NOW = 1_767_225_600_000
const carol: IdentitySession = {
  id: 's-9',
  userId: 'u-9',
  email: 'carol@example.com',
  name: 'Carol',
  groups: ['eng', 'sre'],
  claims: { department: 'Ops' },
  idToken: 'id.tok.en',
  accessToken: 'access-token',
}

const make = (o: Partial<IdentityHeadersOptions> = {}) =>
  createIdentityHeaders({ keys, claimHeaders: { 'X-Email': 'email', 'x-pomerium-claim-department': 'department' }, passIdentityHeaders: false, ...o })

const request = (route: RouteConfig, extra: Partial<{ headers: Record<string, string> }> = {}) => ({
  route,
  host: 'app.example.com',
  headers: extra.headers ?? {},
})

async function verify(token: string | undefined, host = 'app.example.com', issuer = host) {
  assert.ok(token)
  return jwtVerify(token, createLocalJWKSet({ keys: keys.jwks.keys.map((k) => ({ ...k })) }), { issuer, audience: host, currentDate: new Date(NOW) })
}

test('pass_identity_headers on: the assertion and the claim headers are set; client copies of claim headers are removed', async () => {
  const id = make()
  const out = id.identityHeaders({ request: request(routeConfig({ passIdentityHeaders: true })), session: carol, now: NOW })
  assert.deepEqual(Object.keys(out.set).sort(), ['x-email', 'x-pomerium-claim-department', 'x-pomerium-jwt-assertion'])
  assert.equal(out.set['x-email'], 'carol@example.com')
  assert.equal(out.set['x-pomerium-claim-department'], 'Ops')
  assert.deepEqual([...out.remove].sort(), ['x-email', 'x-pomerium-claim-department'])
  const { payload } = await verify(out.set['x-pomerium-jwt-assertion'])
  assert.equal(payload.sub, 'u-9')
  assert.equal(payload['department'], 'Ops')
})

test('pass_identity_headers off (route false, or unset with global false): nothing is set, every claim header name is removed', () => {
  const id = make()
  for (const route of [routeConfig({ passIdentityHeaders: false }), routeConfig()]) {
    const out = id.identityHeaders({ request: request(route), session: carol, now: NOW })
    assert.deepEqual(out.set, {})
    assert.deepEqual([...out.remove].sort(), ['x-email', 'x-pomerium-claim-department'])
  }
})

test('pass_identity_headers: the global setting applies to routes that do not set it; a route false wins over global true', () => {
  const id = make({ passIdentityHeaders: true })
  assert.ok(id.identityHeaders({ request: request(routeConfig()), session: carol, now: NOW }).set['x-pomerium-jwt-assertion'])
  assert.deepEqual(id.identityHeaders({ request: request(routeConfig({ passIdentityHeaders: false })), session: carol, now: NOW }).set, {})
})

test('public route without a session: an anonymous assertion, empty claim headers', async () => {
  const out = make().identityHeaders({ request: request(routeConfig({ passIdentityHeaders: true })), now: NOW })
  assert.equal(out.set['x-email'], '')
  assert.equal(out.set['x-pomerium-claim-department'], '')
  const { payload } = await verify(out.set['x-pomerium-jwt-assertion'])
  assert.deepEqual([payload.sub, payload.user, payload.email, payload.sid], ['', '', '', ''])
})

test('set_request_headers templates are rendered (also with identity headers off); plain values are left to the proxy', async () => {
  const route = routeConfig({
    setRequestHeaders: {
      Authorization: 'Bearer ${pomerium.jwt}',
      'X-Id-Token': '${pomerium.id_token}',
      'X-Access': '$pomerium.access_token',
      'X-Fp': '${pomerium.client_cert_fingerprint}',
      'X-Copy': '${pomerium.request.headers["X-In"]}',
      'X-Plain': 'just text $$',
    },
  })
  const out = make().identityHeaders({ request: request(route, { headers: { 'x-in': 'copied' } }), session: carol, now: NOW })
  assert.deepEqual(Object.keys(out.set).sort(), ['authorization', 'x-access', 'x-copy', 'x-fp', 'x-id-token'])
  assert.match(out.set['authorization'] ?? '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/)
  await verify(out.set['authorization']?.slice('Bearer '.length))
  assert.equal(out.set['x-id-token'], 'id.tok.en')
  assert.equal(out.set['x-access'], 'access-token')
  assert.equal(out.set['x-fp'], '')
  assert.equal(out.set['x-copy'], 'copied')
  assert.ok(out.remove.includes('authorization'), 'client copies of templated headers are removed')
  assert.ok(!out.remove.includes('x-plain'))
})

test('${pomerium.jwt} and X-Pomerium-Jwt-Assertion of one request are the same assertion', () => {
  const route = routeConfig({ passIdentityHeaders: true, setRequestHeaders: { 'X-Jwt': '${pomerium.jwt}' } })
  const out = make({ reuseAssertions: false }).identityHeaders({ request: request(route), session: carol, now: NOW })
  assert.equal(out.set['x-jwt'], out.set['x-pomerium-jwt-assertion'])
})

test('a template wins over a claim header of the same name; a refused template value removes the header', () => {
  const route = routeConfig({ passIdentityHeaders: true, setRequestHeaders: { 'X-Email': '${pomerium.request.headers["X-In"]}' } })
  const id = make()
  assert.equal(id.identityHeaders({ request: request(route, { headers: { 'x-in': 'from-template' } }), session: carol, now: NOW }).set['x-email'], 'from-template')
  const refused = id.identityHeaders({ request: request(route, { headers: { 'x-in': 'a\nb' } }), session: carol, now: NOW })
  assert.equal('x-email' in refused.set, false)
  assert.ok(refused.remove.includes('x-email'))
})

test('hostile: a claim value with CR/LF drops that header only; the assertion still goes', () => {
  const out = make().identityHeaders({ request: request(routeConfig({ passIdentityHeaders: true })), session: { ...carol, email: 'x@y\r\nX-Admin: 1' }, now: NOW })
  assert.equal('x-email' in out.set, false)
  assert.ok(out.remove.includes('x-email'))
  assert.ok(out.set['x-pomerium-jwt-assertion'])
  for (const v of Object.values(out.set)) assert.doesNotMatch(v, /[\r\n\0]/)
})

test('route jwt_issuer_format and jwt_groups_filter apply; route filter is a union with the global one', async () => {
  const route = routeConfig({ passIdentityHeaders: true, jwtIssuerFormat: 'uri', jwtGroupsFilter: ['sre'] })
  const out = make({ groupsFilter: ['eng'] }).identityHeaders({ request: request(route), session: { ...carol, groups: ['eng', 'sre', 'other'] }, now: NOW })
  const { payload } = await verify(out.set['x-pomerium-jwt-assertion'], 'app.example.com', 'https://app.example.com/')
  assert.deepEqual(payload.groups, ['eng', 'sre'])
})

test('jwksResponse: body is the JWKS, Cache-Control max-age=60, JSON content type', () => {
  const r = jwksResponse(keys)
  assert.equal(r.status, 200)
  assert.equal(r.headers['cache-control'], 'max-age=60')
  assert.equal(r.headers['content-type'], 'application/json')
  assert.deepEqual(JSON.parse(r.body), { keys: keys.jwks.keys })
  assert.equal(make().jwks.body, r.body)
})

test('identitySession maps a stored session and user as Pomerium fills the payload', () => {
  const session: Session = {
    id: 's1',
    userId: 'u1',
    idpId: 'idp',
    issuedAt: 0,
    expiresAt: 1,
    accessToken: 'at',
    refreshToken: 'rt',
    idToken: 'it',
    tokenExpiresAt: undefined,
    claims: { groups: ['g1', 'g2'], name: 'Session Name', email: 'claim@example.com' },
  }
  const user: User = { id: 'u1', email: 'user@example.com', name: 'User Name', claims: { office: 'x' } }
  assert.deepEqual(identitySession(session, user), {
    id: 's1',
    userId: 'u1',
    email: 'user@example.com',
    name: 'Session Name',
    groups: ['g1', 'g2'],
    claims: session.claims,
    userClaims: user.claims,
    idToken: 'it',
    accessToken: 'at',
  })
  const bare = identitySession({ ...session, claims: {} }, undefined)
  assert.deepEqual([bare.email, bare.name, bare.groups], ['', '', []])
  assert.equal(identitySession({ ...session, claims: { email: 'claim@example.com' } }, undefined).email, 'claim@example.com')
})

test('identityOptionsFromConfig reads the typed settings; identityConfigIssues checks the written ones', () => {
  const config = {
    raw: { jwt_issuer_format: 'uri', jwt_groups_filter: ['a'], jwt_claims_headers: { 'X-Email': 'email', 'Content-Length': 'email' } },
    jwtIssuerFormat: 'uri',
    jwtGroupsFilter: ['a'],
    jwtClaimsHeaders: { 'X-Email': 'email' },
    passIdentityHeaders: true,
    routes: [
      routeConfig({ setRequestHeaders: { 'X-A': '${pomerium.jwt}', 'X-B': '${pomerium.nope}', 'X-C': 'plain' } }),
    ],
  } as unknown as Config
  const o = identityOptionsFromConfig(config, keys)
  assert.equal(o.issuerFormat, 'uri')
  assert.deepEqual(o.groupsFilter, ['a'])
  assert.deepEqual(o.claimHeaders, { 'X-Email': 'email' })
  assert.equal(o.passIdentityHeaders, true)
  const issues = identityConfigIssues(config)
  assert.deepEqual(
    issues.map((i) => i.path),
    ['jwt_claims_headers.Content-Length', 'routes[0].set_request_headers.X-B'],
  )
  assert.match(issues[1]?.message ?? '', /unknown template variable \$\{pomerium\.nope\}/)
})
