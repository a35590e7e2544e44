import assert from 'node:assert/strict'
import { test } from 'node:test'
import { frontChannelLoggedOut, frontChannelLogoutParams, matchesSession, sessionIssuer } from './frontchannel-logout.js'
import type { Session } from '../session/session-store.js'

const ISS = 'https://idp.example.com'

function idToken(claims: Record<string, unknown>): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  return `${part({ alg: 'RS256' })}.${part(claims)}.c2ln`
}

function session(overrides: Partial<Session> = {}): Session {
  return {
    id: 's1',
    userId: 'u1',
    idpId: 'p1',
    issuedAt: 0,
    expiresAt: Number.MAX_SAFE_INTEGER,
    accessToken: 'at',
    refreshToken: undefined,
    idToken: idToken({ iss: ISS, sub: 'u1', sid: 'idp-sid' }),
    tokenExpiresAt: undefined,
    // UserInfo members merged into the claims never decide the issuer.
    claims: { iss: 'https://userinfo.example', sub: 'u1' },
    idpSessionId: 'idp-sid',
    ...overrides,
  }
}

test('iss and sid are read once each, non-empty, from the query', () => {
  assert.deepEqual(frontChannelLogoutParams(`?iss=${encodeURIComponent(ISS)}&sid=abc`), { iss: ISS, sid: 'abc' })
  assert.deepEqual(frontChannelLogoutParams('sid=abc&iss=x'), { iss: 'x', sid: 'abc' })
  for (const q of ['', '?sid=abc', '?iss=x', '?iss=&sid=abc', '?iss=x&sid=', '?iss=x&sid=a&sid=a', '?iss=x&iss=x&sid=a', `?iss=x&sid=${'a'.repeat(2049)}`]) {
    assert.equal(frontChannelLogoutParams(q), undefined, q)
  }
})

test("the session's issuer is its ID token's iss, not a merged claim", () => {
  assert.equal(sessionIssuer(session()), ISS)
  assert.equal(sessionIssuer(session({ idToken: undefined })), undefined)
  assert.equal(sessionIssuer(session({ idToken: 'not-a-jwt' })), undefined)
  assert.equal(sessionIssuer(session({ idToken: 'a.!!!.c' })), undefined)
  assert.equal(sessionIssuer(session({ idToken: idToken({ sub: 'u1' }) })), undefined)
})

test('only the exact issuer and provider session id match', () => {
  assert.equal(matchesSession({ iss: ISS, sid: 'idp-sid' }, session()), true)
  assert.equal(matchesSession({ iss: ISS, sid: 'idp-si' }, session()), false)
  assert.equal(matchesSession({ iss: `${ISS}/`, sid: 'idp-sid' }, session()), false)
  assert.equal(matchesSession({ iss: 'https://userinfo.example', sid: 'idp-sid' }, session()), false)
  const withoutSid: Record<string, unknown> = { ...session() }
  delete withoutSid['idpSessionId']
  assert.equal(matchesSession({ iss: ISS, sid: 'idp-sid' }, withoutSid as unknown as Session), false, 'a session without a provider sid never matches')
  assert.equal(matchesSession({ iss: ISS, sid: '' }, session({ idpSessionId: '' })), false)
  assert.equal(matchesSession({ iss: ISS, sid: 'idp-sid' }, session({ idToken: undefined })), false)
})

test('the answer is an empty, uncached page only the provider may frame', () => {
  const res = frontChannelLoggedOut(`${ISS}/tenant`, ['_pomerium=; Max-Age=0'])
  assert.equal(res.status, 200)
  assert.equal(res.headers['cache-control'], 'no-cache, no-store')
  assert.equal(res.headers['pragma'], 'no-cache')
  assert.match(res.headers['content-security-policy'] ?? '', new RegExp(`frame-ancestors ${ISS};`))
  assert.deepEqual(res.cookies, ['_pomerium=; Max-Age=0'])
  assert.match(frontChannelLoggedOut('not a url', []).headers['content-security-policy'] ?? '', /frame-ancestors 'none'/)
})
