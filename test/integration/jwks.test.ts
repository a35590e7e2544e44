/**
 * The identity statement as an upstream sees it: the JWKS served over HTTP and fetched by a
 * standard verifier (jose's remote JWKS), and the identity headers combined with the proxy's
 * upstream header builder against client-supplied copies (hostile-input case: header trust; tokens / jwt).
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { createIdentityHeaders, JWKS_PATH } from '../../src/authorize/identity/index.js'
import type { IdentityHeaders, IdentitySession } from '../../src/authorize/identity/index.js'
import { loadSigningKeys } from '../../src/shared/signing-keys.js'
import { buildHeaderPlan, buildUpstreamHeaders } from '../../src/proxy/headers.js'
import { routeConfig } from '../fixtures/route-config.js'

const dave: IdentitySession = { id: 'sess-d', userId: 'user-d', email: 'dave@example.com', name: 'Dave', groups: ['eng'], claims: {} }
let identity: IdentityHeaders
let server: ReturnType<typeof createServer>
let jwksUrl: URL
let requests = 0

before(async () => {
  identity = createIdentityHeaders({
    keys: loadSigningKeys(undefined, Buffer.alloc(32, 9)),
    claimHeaders: { 'X-Email': 'email', 'x-pomerium-claim-groups': 'groups' },
    passIdentityHeaders: false,
  })
  server = createServer((req, res) => {
    requests++
    if (req.url !== JWKS_PATH) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(identity.jwks.status, identity.jwks.headers).end(identity.jwks.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  jwksUrl = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}${JWKS_PATH}`)
})

after(() => {
  server.close()
})

test('JWKS over HTTP: an upstream verifies our assertion with a remote JWKS (aud = route host, short exp)', async () => {
  const res = await fetch(jwksUrl)
  assert.equal(res.headers.get('cache-control'), 'max-age=60')
  assert.equal(res.headers.get('content-type'), 'application/json')
  const route = routeConfig({ passIdentityHeaders: true })
  const token = identity.identityHeaders({ request: { route, host: 'app.example.com', headers: {} }, session: dave }).set['x-pomerium-jwt-assertion']
  assert.ok(token)
  const { payload } = await jwtVerify(token, createRemoteJWKSet(jwksUrl), { issuer: 'app.example.com', audience: 'app.example.com' })
  assert.equal(payload.email, 'dave@example.com')
  assert.ok((payload.exp as number) - (payload.iat as number) <= 300)
  await assert.rejects(jwtVerify(token, createRemoteJWKSet(jwksUrl), { audience: 'other.example.com' }), /aud/)
  assert.ok(requests >= 2)
})

function upstreamHeaders(passIdentityHeaders: boolean, clientHeaders: string[]): [string, string][] {
  const route = routeConfig({ passIdentityHeaders })
  const ours = identity.identityHeaders({ request: { route, host: 'app.example.com', headers: {} }, session: dave })
  const out = buildUpstreamHeaders({
    rawHeaders: clientHeaders,
    plan: buildHeaderPlan(route, false),
    upstreamHost: 'upstream',
    originalHost: undefined,
    requestId: 'rid',
    remoteAddress: '127.0.0.1',
    clientIp: '127.0.0.1',
    scheme: 'https',
    skipXffAppend: false,
    trustForwardedHeaders: false,
    dropUnderscoreHeaders: false,
    cookieName: '_pomerium',
    authzSet: ours.set,
    authzRemove: ours.remove,
    upgrade: undefined,
  })
  const pairs: [string, string][] = []
  for (let i = 0; i < out.length; i += 2) pairs.push([(out[i] as string).toLowerCase(), out[i + 1] as string])
  return pairs
}

const SPOOFED = [
  'X-Pomerium-Jwt-Assertion', 'forged.jwt.value',
  'X-Email', 'admin@corp',
  'x_email', 'admin@corp',
  'X-POMERIUM-CLAIM-GROUPS', 'admins',
  'x-pomerium-claim_groups', 'admins',
  'Connection', 'close, X-Email, X-Pomerium-Jwt-Assertion, x-pomerium-claim-groups',
]

test('hostile: spoofed identity headers never reach the upstream; ours do, once, whatever Connection lists (identity on)', async () => {
  const pairs = upstreamHeaders(true, SPOOFED)
  const values = (name: string) => pairs.filter(([n]) => n === name || n === name.replace(/-/g, '_')).map(([, v]) => v)
  assert.deepEqual(values('x-email'), ['dave@example.com'])
  assert.deepEqual(values('x-pomerium-claim-groups'), ['eng'])
  const assertion = values('x-pomerium-jwt-assertion')
  assert.equal(assertion.length, 1)
  assert.notEqual(assertion[0], 'forged.jwt.value')
  await jwtVerify(assertion[0] as string, createRemoteJWKSet(jwksUrl), { audience: 'app.example.com' })
})

test('hostile: with identity headers off, neither spoofed nor our identity headers reach the upstream', () => {
  const names = upstreamHeaders(false, SPOOFED).map(([n]) => n.replace(/_/g, '-'))
  for (const name of ['x-email', 'x-pomerium-claim-groups', 'x-pomerium-jwt-assertion', 'x-pomerium-jwt-assertion-for']) {
    assert.equal(names.includes(name), false, name)
  }
})
