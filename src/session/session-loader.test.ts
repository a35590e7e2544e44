import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { MemoryRecordStore } from '../databroker/index.js'
import { signSessionHandle } from './session-handle.js'
import type { SessionHandle } from './session-handle.js'
import { loadSession } from './session-loader.js'
import { SessionStore } from './session-store.js'

async function setup() {
  const db = new MemoryRecordStore()
  const sessions = new SessionStore(db, { lifetimeMs: 3600_000 })
  const secret = randomBytes(32)
  const { session } = await sessions.create({ userId: 'u1', idpId: 'idp', accessToken: 'at', refreshToken: undefined, idToken: undefined, tokenExpiresAt: undefined, claims: {} })
  const now = Math.floor(Date.now() / 1000)
  const handle: SessionHandle = { iss: 'authn.example.com', sub: 'u1', aud: ['authn.example.com', 'app.example.com'], iat: now, exp: now + 3600, jti: session.id, idp_id: 'idp' }
  const deps = { sessions, sharedSecret: secret, cookieName: '_pomerium' }
  return { db, sessions, secret, session, handle, deps, token: signSessionHandle(handle, secret) }
}

const req = (headers: Record<string, string>, query = '') => ({ headers, query, host: 'app.example.com' })

test('a valid handle for this host and provider loads its live session, from any credential form', async () => {
  const { deps, token, session, db } = await setup()
  for (const headers of [{ cookie: `_pomerium=${token}` }, { authorization: `Pomerium ${token}` }, { 'x-pomerium-authorization': token }]) {
    const r = await loadSession(req(headers), 'idp', deps)
    assert.equal(r.kind, 'ok')
    assert.equal(r.kind === 'ok' && r.session.id, session.id)
  }
  assert.equal((await loadSession(req({}, `?pomerium_session=${token}`), 'idp', deps)).kind, 'ok')
  assert.deepEqual(await loadSession(req({}), 'idp', deps), { kind: 'none' })
  await db.close()
})

test('hostile: other hosts, other providers, ended sessions, mismatched users and forged tokens are not sessions', async () => {
  const { deps, token, handle, secret, sessions, session, db } = await setup()
  const reasonOf = async (r: Promise<Awaited<ReturnType<typeof loadSession>>>): Promise<string> => {
    const v = await r
    assert.equal(v.kind, 'invalid')
    return v.kind === 'invalid' ? v.reason : ''
  }
  assert.match(await reasonOf(loadSession({ ...req({ cookie: `_pomerium=${token}` }), host: 'other.example.com' }, 'idp', deps)), /this host/)
  assert.match(await reasonOf(loadSession(req({ cookie: `_pomerium=${token}` }), 'other-idp', deps)), /another identity provider/)
  assert.match(await reasonOf(loadSession(req({ cookie: `_pomerium=${signSessionHandle({ ...handle, sub: 'admin' }, secret)}` }), 'idp', deps)), /does not match/)
  assert.match(await reasonOf(loadSession(req({ cookie: `_pomerium=${signSessionHandle(handle, randomBytes(32))}` }), 'idp', deps)), /not valid/)
  assert.match(await reasonOf(loadSession(req({ authorization: 'Pomerium garbage' }), 'idp', deps)), /not valid/)
  await sessions.delete(session.id)
  assert.match(await reasonOf(loadSession(req({ cookie: `_pomerium=${token}` }), 'idp', deps)), /ended/)
  await db.close()
})

test('a handle covers its hosts, and subdomains of a `.domain` entry only (cookie_domain)', async () => {
  const { audienceIncludes } = await import('./session-loader.js')
  assert.equal(audienceIncludes(['app.example.com'], 'app.example.com'), true)
  assert.equal(audienceIncludes(['app.example.com'], 'other.example.com'), false)
  assert.equal(audienceIncludes(['.example.com'], 'other.example.com'), true)
  assert.equal(audienceIncludes(['.example.com'], 'evilexample.com'), false)
  assert.equal(audienceIncludes(['.example.com'], 'example.com.evil.net'), false)
  assert.equal(audienceIncludes(['.'], 'anything'), false)
})
