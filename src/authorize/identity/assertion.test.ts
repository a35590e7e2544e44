import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { test } from 'node:test'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { createAssertionMinter, parseIssuerFormat } from './assertion.js'
import type { AssertionOptions, IdentitySession } from './assertion.js'
import { loadSigningKeys } from '../../shared/signing-keys.js'
import type { SigningKeys } from '../../shared/signing-keys.js'

const keys = loadSigningKeys(undefined, Buffer.alloc(32, 7))
const jwks = (k: SigningKeys = keys) => createLocalJWKSet({ keys: k.jwks.keys.map((j) => ({ ...j })) })
const NOW = Date.UTC(2026, 0, 2, 3, 4, 5, 678)
const NOW_S = Math.floor(NOW / 1000)

const alice: IdentitySession = {
  id: 'sess-1',
  userId: 'user-1',
  email: 'alice@example.com',
  name: 'Alice Liddell',
  groups: ['admins', 'eng', 'all'],
  claims: { department: 'R&D', teams: ['red', 'blue'], level: 3, verified: true, nested: { a: 1 }, empty: [] },
  userClaims: { department: 'ignored (session wins)', office: 'Oxford' },
}

const options = (o: Partial<AssertionOptions> = {}): AssertionOptions => ({ issuerFormat: 'hostOnly', claimHeaders: {}, ...o })

async function verify(token: string, host = 'app.example.com', k: SigningKeys = keys, issuer = host) {
  return jwtVerify(token, jwks(k), { issuer, audience: host, currentDate: new Date(NOW) })
}

test('assertion: verifies against the JWKS and carries every claim of Pomerium docs: X-Pomerium-Jwt-Assertion', async () => {
  const minter = createAssertionMinter(keys, options())
  const token = minter.mint({ host: 'app.example.com', session: alice, now: NOW })
  const { payload, protectedHeader } = await verify(token)
  assert.deepEqual(protectedHeader, { alg: 'ES256', kid: keys.signer.kid, typ: 'JWT' })
  assert.match(payload.jti as string, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.deepEqual(payload, {
    aud: 'app.example.com',
    email: 'alice@example.com',
    exp: NOW_S + 300,
    groups: ['admins', 'eng', 'all'],
    iat: NOW_S,
    iss: 'app.example.com',
    jti: payload.jti,
    name: 'Alice Liddell',
    sid: 'sess-1',
    sub: 'user-1',
    user: 'user-1',
  })
  assert.equal(typeof payload.aud, 'string', 'aud is a string, not an array')
})

test('assertion: payload keys are sorted, header is {alg,kid,typ}, as Pomerium (Go json.Marshal of a map) writes them', () => {
  const token = createAssertionMinter(keys, options({ claimHeaders: { 'X-Dept': 'department' } })).mint({ host: 'h.example', session: alice, now: NOW })
  const [h, p] = token.split('.') as [string, string]
  assert.equal(Buffer.from(h, 'base64url').toString(), `{"alg":"ES256","kid":"${keys.signer.kid}","typ":"JWT"}`)
  const keysInOrder = Object.keys(JSON.parse(Buffer.from(p, 'base64url').toString()) as object)
  assert.deepEqual(keysInOrder, ['aud', 'department', 'email', 'exp', 'groups', 'iat', 'iss', 'jti', 'name', 'sid', 'sub', 'user'])
})

test('assertion: anonymous request (public route) has empty sub, user, email, sid, name and groups []', async () => {
  const token = createAssertionMinter(keys, options({ claimHeaders: { 'X-Dept': 'department' } })).mint({ host: 'public.example.com', now: NOW })
  const { payload } = await verify(token, 'public.example.com')
  assert.equal(payload.sub, '')
  assert.equal(payload.user, '')
  assert.equal(payload.email, '')
  assert.equal(payload.sid, '')
  assert.equal(payload.name, '')
  assert.deepEqual(payload.groups, [])
  assert.equal('department' in payload, false)
})

test('assertion: groups is [] (not null) for a session without groups', async () => {
  const token = createAssertionMinter(keys, options()).mint({ host: 'a.example', session: { ...alice, groups: [] }, now: NOW })
  assert.deepEqual((await verify(token, 'a.example')).payload.groups, [])
})

test('assertion: jwt_issuer_format uri gives iss https://<host>/, aud stays the host; a route setting wins over the global one', async () => {
  const uri = createAssertionMinter(keys, options({ issuerFormat: 'uri' }))
  const a = await verify(uri.mint({ host: 'app.example.com', session: alice, now: NOW }), 'app.example.com', keys, 'https://app.example.com/')
  assert.equal(a.payload.aud, 'app.example.com')
  const host = await verify(uri.mint({ host: 'app.example.com', session: alice, now: NOW }, { issuerFormat: 'hostOnly' }))
  assert.equal(host.payload.iss, 'app.example.com')
  const routeUri = createAssertionMinter(keys, options()).mint({ host: 'b.example', session: alice, now: NOW }, { issuerFormat: 'uri' })
  assert.equal((await verify(routeUri, 'b.example', keys, 'https://b.example/')).payload.iss, 'https://b.example/')
})

test('assertion: the audience is per route host; a token for one host does not verify for another', async () => {
  const token = createAssertionMinter(keys, options()).mint({ host: 'app.example.com', session: alice, now: NOW })
  await assert.rejects(verify(token, 'other.example.com', keys, 'app.example.com'), /aud/)
})

test('assertion: expires 300 s after issue', async () => {
  const token = createAssertionMinter(keys, options()).mint({ host: 'a.example', session: alice, now: NOW })
  await assert.rejects(jwtVerify(token, jwks(), { currentDate: new Date(NOW + 301_000) }), /exp/)
})

test('jwt_groups_filter: global, route, and their union; an empty filter filters nothing', async () => {
  const groupsOf = async (o: Partial<AssertionOptions>, route?: readonly string[]) =>
    (await verify(createAssertionMinter(keys, options(o)).mint({ host: 'a.example', session: alice, now: NOW }, { groupsFilter: route }), 'a.example')).payload.groups
  assert.deepEqual(await groupsOf({ groupsFilter: ['eng', 'nope'] }), ['eng'])
  assert.deepEqual(await groupsOf({}, ['admins']), ['admins'])
  assert.deepEqual(await groupsOf({ groupsFilter: ['eng'] }, ['all']), ['eng', 'all'])
  assert.deepEqual(await groupsOf({ groupsFilter: [] }, []), ['admins', 'eng', 'all'])
  assert.deepEqual(await groupsOf({ groupsFilter: ['none'] }), [])
})

test('jwt_claims_headers claims: added when not standard, from session claims then user claims, lists joined with ","', async () => {
  const minter = createAssertionMinter(
    keys,
    options({
      claimHeaders: {
        'X-Dept': 'department',
        'X-Teams': 'teams',
        'X-Level': 'level',
        'X-Verified': 'verified',
        'X-Office': 'office',
        'X-Missing': 'missing',
        'X-Nested': 'nested',
        'X-Empty': 'empty',
        'X-Email': 'email',
        'x-pomerium-claim-sub': 'sub',
      },
    }),
  )
  const { payload } = await verify(minter.mint({ host: 'a.example', session: { ...alice, claims: { ...alice.claims, email: 'claim@evil', sub: 'x' } }, now: NOW }), 'a.example')
  assert.equal(payload['department'], 'R&D')
  assert.equal(payload['teams'], 'red,blue')
  assert.equal(payload['level'], '3')
  assert.equal(payload['verified'], 'true')
  assert.equal(payload['office'], 'Oxford')
  assert.equal('missing' in payload, false)
  assert.equal(payload['nested'], '', 'objects are skipped, as Pomerium skips struct values')
  assert.equal(payload['empty'], '')
  assert.equal(payload.email, 'alice@example.com', 'a standard claim is never replaced by a session claim')
  assert.equal(payload.sub, 'user-1')
})

test('reuse: the same assertion within half its lifetime; a fresh one (new jti, new iat) after', () => {
  const minter = createAssertionMinter(keys, options())
  const input = { host: 'a.example', session: alice }
  const first = minter.mint({ ...input, now: NOW })
  assert.equal(minter.mint({ ...input, now: NOW + 149_000 }), first)
  const later = minter.issue({ ...input, now: NOW + 150_000 })
  assert.notEqual(later.token, first)
  assert.equal(later.payload.iat, NOW_S + 150)
  const firstJti = (JSON.parse(Buffer.from(first.split('.')[1] as string, 'base64url').toString()) as { jti: string }).jti
  assert.notEqual(later.payload.jti, firstJti)
})

test('reuse: keyed on the whole statement — another session, host, identity change or route option mints a new one', () => {
  const minter = createAssertionMinter(keys, options({ claimHeaders: { 'X-Dept': 'department' } }))
  const base = minter.mint({ host: 'a.example', session: alice, now: NOW })
  const variants = [
    minter.mint({ host: 'b.example', session: alice, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...alice, id: 'sess-2' }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...alice, email: 'new@example.com' }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...alice, groups: ['eng'] }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...alice, claims: { ...alice.claims, department: 'Ops' } }, now: NOW }),
    minter.mint({ host: 'a.example', session: alice, now: NOW }, { issuerFormat: 'uri' }),
    minter.mint({ host: 'a.example', now: NOW }),
  ]
  for (const v of variants) assert.notEqual(v, base)
  assert.equal(new Set(variants).size, variants.length)
  assert.equal(minter.mint({ host: 'a.example', session: { ...alice }, now: NOW + 1000 }), base, 'equal content reuses')
})

test('reuse: the key keeps field boundaries — text moved from one field into the next is another statement', () => {
  const minter = createAssertionMinter(keys, options())
  const plain = { ...alice, groups: [] }
  const tokens = [
    minter.mint({ host: 'a.example', session: { ...plain, email: 'a', name: 'b' }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...plain, email: 'a1:b', name: '' }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...plain, email: '', name: 'a1:b' }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...plain, groups: ['x', 'y'] }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...plain, groups: ['x1:y'] }, now: NOW }),
    minter.mint({ host: 'a.example', session: { ...plain, groups: ['x'], id: `1:y${plain.id}` }, now: NOW }),
  ]
  assert.equal(new Set(tokens).size, tokens.length)
})

test('reuse: a clock that went back re-signs; reuse can be turned off; the cache is bounded (LRU)', () => {
  const minter = createAssertionMinter(keys, options({ cacheEntries: 2 }))
  const a = minter.mint({ host: 'a.example', session: alice, now: NOW })
  assert.notEqual(minter.mint({ host: 'a.example', session: alice, now: NOW - 5000 }), a)
  const b = minter.mint({ host: 'b.example', session: alice, now: NOW })
  const a2 = minter.mint({ host: 'a.example', session: alice, now: NOW })
  minter.mint({ host: 'c.example', session: alice, now: NOW }) // evicts b (least recently used)
  assert.equal(minter.cached, 2)
  assert.equal(minter.mint({ host: 'a.example', session: alice, now: NOW }), a2)
  assert.notEqual(minter.mint({ host: 'b.example', session: alice, now: NOW }), b)

  const off = createAssertionMinter(keys, options({ reuse: false }))
  assert.notEqual(off.mint({ host: 'a.example', session: alice, now: NOW }), off.mint({ host: 'a.example', session: alice, now: NOW }))
  assert.equal(off.cached, 0)
})

test('the first of several signing keys signs; the token verifies against the JWKS of all keys', async () => {
  const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  for (const [text, alg] of [
    [`${rsa}\n${ed}`, 'RS256'],
    [`${ed}\n${rsa}`, 'EdDSA'],
  ] as const) {
    const k = loadSigningKeys(text, Buffer.alloc(32))
    const token = createAssertionMinter(k, options()).mint({ host: 'a.example', session: alice, now: NOW })
    assert.equal(decodeProtectedHeader(token).alg, alg)
    assert.equal(decodeProtectedHeader(token).kid, k.all[0]?.kid)
    await verify(token, 'a.example', k)
  }
})

test('claim values with CR/LF are carried inside the signed JSON unchanged (escaped by JSON)', async () => {
  const token = createAssertionMinter(keys, options()).mint({ host: 'a.example', session: { ...alice, name: 'Eve\r\nX-Admin: 1' }, now: NOW })
  assert.doesNotMatch(token, /[\r\n]/)
  assert.equal((await verify(token, 'a.example')).payload.name, 'Eve\r\nX-Admin: 1')
})

test('parseIssuerFormat', () => {
  assert.equal(parseIssuerFormat('uri'), 'uri')
  assert.equal(parseIssuerFormat('URI'), 'uri')
  assert.equal(parseIssuerFormat('hostOnly'), 'hostOnly')
  assert.equal(parseIssuerFormat('IssuerHostOnly'), 'hostOnly')
  assert.equal(parseIssuerFormat(undefined), undefined)
  assert.equal(parseIssuerFormat('url'), undefined)
})
