import assert from 'node:assert/strict'
import { createHmac, randomBytes } from 'node:crypto'
import http2 from 'node:http2'
import { after, before, describe, it } from 'node:test'
import { assertRejectsWithCode, recordStoreConformance } from './conformance.test-helpers.js'
import { MemoryRecordStore } from './memory.js'
import { createRemoteRecordStore } from './remote.js'
import { startDatabrokerServer } from './server.js'
import type { DatabrokerServer } from './server.js'
import type { RecordStore } from './types.js'
import { signSessionHandle } from '../session/session-handle.js'
import { deriveInternalKey, mintInternalToken } from '../internal/token.js'
import { createLogger } from '../shared/log.js'
import { testPki } from '../../test/fixtures/certs.js'

const logger = createLogger('disabled')
const CASE = { timeout: 20_000 }

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
function forge(header: unknown, claims: unknown, key: Buffer): string {
  const input = `${b64(header)}.${b64(claims)}`
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
}

/** One raw HTTP/2 POST; answers the status and the parsed body. */
async function post(
  url: string,
  path: string,
  authorization: string | undefined,
  body: unknown,
  options: http2.SecureClientSessionOptions = {},
): Promise<{ status: number; body: unknown }> {
  const session = http2.connect(url, options)
  try {
    return await new Promise((resolve, reject) => {
      session.on('error', reject)
      const stream = session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/json',
        ...(authorization === undefined ? {} : { authorization }),
      })
      let status = 0
      const chunks: Buffer[] = []
      stream.on('response', (h) => (status = Number(h[':status'])))
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        resolve({ status, body: text === '' ? undefined : (JSON.parse(text) as unknown) })
      })
      stream.on('error', reject)
      stream.end(JSON.stringify(body))
    })
  } finally {
    session.destroy()
  }
}

describe('databroker server: the internal credential', () => {
  const secret = randomBytes(32)
  const key = deriveInternalKey(secret)
  const local = new MemoryRecordStore()
  let server: DatabrokerServer
  before(async () => {
    server = await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret: secret, logger })
  })
  after(async () => {
    await server.close()
    await local.close()
  })

  it('refuses anything but a valid internal credential with 401, changing nothing', CASE, async () => {
    const now = Math.floor(Date.now() / 1000)
    const header = { alg: 'HS256', typ: 'portcullis-internal+jwt' }
    const claims = { iat: now, exp: now + 300, aud: 'portcullis-internal' }
    const handle = signSessionHandle(
      { iss: 'authenticate.localhost', sub: 'alice', aud: ['app.localhost'], iat: now, exp: now + 3600, jti: 'sess', idp_id: 'idp' },
      secret,
    )
    const valid = mintInternalToken(key)
    const refused: Record<string, string | undefined> = {
      'missing header': undefined,
      expired: `Bearer ${forge(header, { ...claims, iat: now - 3600, exp: now - 120 }, key)}`,
      'wrong aud': `Bearer ${forge(header, { ...claims, aud: 'app.localhost' }, key)}`,
      'wrong typ': `Bearer ${forge({ alg: 'HS256', typ: 'JWT' }, claims, key)}`,
      'alg none': `Bearer ${b64({ alg: 'none', typ: 'portcullis-internal+jwt' })}.${b64(claims)}.`,
      'signed with the raw shared secret': `Bearer ${forge(header, claims, secret)}`,
      'a random JWT signed with the raw shared secret': `Bearer ${forge({ alg: 'HS256', typ: 'JWT' }, { exp: now + 300 }, secret)}`,
      'a session handle as Bearer': `Bearer ${handle}`,
      'a session handle as Pomerium': `Pomerium ${handle}`,
      'a session handle as Bearer Pomerium-': `Bearer Pomerium-${handle}`,
      'a valid credential in the Pomerium scheme': `Pomerium ${valid}`,
      'another secret': `Bearer ${mintInternalToken(deriveInternalKey(randomBytes(32)))}`,
    }
    for (const [what, authorization] of Object.entries(refused)) {
      const res = await post(server.url, '/databroker/v1/put', authorization, {
        records: [{ type: 't', id: what, data: 1 }],
      })
      assert.equal(res.status, 401, what)
      assert.deepEqual(res.body, { code: 'ERR_UNAUTHENTICATED', message: 'a valid internal credential is required' })
      // Unknown paths answer 401 too: nothing is learnt without a credential.
      assert.equal((await post(server.url, '/nope', authorization, {})).status, 401, what)
    }
    assert.deepEqual(await local.listTypes(), [])
    assert.equal((await local.serverInfo()).latestRecordVersion, 0)

    const ok = await post(server.url, '/databroker/v1/put', `Bearer ${valid}`, { records: [{ type: 't', id: 'x', data: 1 }] })
    assert.equal(ok.status, 200)
    assert.equal((await local.get('t', 'x'))?.data, 1)
    assert.equal((await post(server.url, '/nope', `Bearer ${valid}`, {})).status, 404)
  })

  it('answers errors as {code, message} with the DataBrokerError code', CASE, async () => {
    const auth = `Bearer ${mintInternalToken(key)}`
    const res = await post(server.url, '/databroker/v1/get', auth, { type: '', id: 'x' })
    assert.equal(res.status, 400)
    assert.equal((res.body as { code: string }).code, 'ERR_DATABROKER_INVALID_ARGUMENT')
    const bad = await post(server.url, '/databroker/v1/put', auth, { records: 'nope' })
    assert.equal((bad.body as { code: string }).code, 'ERR_DATABROKER_INVALID_ARGUMENT')
  })
})

describe('databroker server over TLS', () => {
  const pki = testPki()
  const secret = randomBytes(32)

  it('a client trusting certificate_authority works; verification is never off', CASE, async () => {
    const local = new MemoryRecordStore()
    const server = await startDatabrokerServer({
      store: local,
      address: '127.0.0.1:0',
      tls: { cert: pki.server.certPem, key: pki.server.keyPem },
      sharedSecret: secret,
      logger,
    })
    const untrusted = await startDatabrokerServer({
      store: local,
      address: '127.0.0.1:0',
      tls: { cert: pki.untrustedServer.certPem, key: pki.untrustedServer.keyPem },
      sharedSecret: secret,
      logger,
    })
    const good = createRemoteRecordStore({ urls: [server.url], sharedSecret: secret, tls: { ca: pki.ca.certPem }, logger })
    const named = createRemoteRecordStore({
      urls: [server.url],
      sharedSecret: secret,
      tls: { ca: pki.ca.certPem, serverName: 'app.localhost' },
      logger,
    })
    const noCa = createRemoteRecordStore({ urls: [server.url], sharedSecret: secret, logger })
    const wrongCa = createRemoteRecordStore({ urls: [untrusted.url], sharedSecret: secret, tls: { ca: pki.ca.certPem }, logger })
    const wrongName = createRemoteRecordStore({
      urls: [server.url],
      sharedSecret: secret,
      tls: { ca: pki.ca.certPem, serverName: 'elsewhere.example' },
      logger,
    })
    try {
      assert.match(server.url, /^https:\/\//)
      await good.put([{ type: 't', id: 'x', data: 'tls' }])
      assert.equal((await named.get('t', 'x'))?.data, 'tls')
      await assertRejectsWithCode(noCa.get('t', 'x'), 'ERR_DATABROKER_UNAVAILABLE')
      await assertRejectsWithCode(wrongCa.get('t', 'x'), 'ERR_DATABROKER_UNAVAILABLE')
      await assertRejectsWithCode(wrongName.get('t', 'x'), 'ERR_DATABROKER_UNAVAILABLE')
      // A cleartext client cannot talk to the TLS listener either.
      await assertRejectsWithCode(
        createRemoteRecordStore({ urls: [server.url.replace('https:', 'http:')], sharedSecret: secret, logger, timeoutMs: 2_000 }).get('t', 'x'),
        'ERR_DATABROKER_UNAVAILABLE',
      )
    } finally {
      for (const s of [good, named, noCa, wrongCa, wrongName]) await s.close()
      await server.close()
      await untrusted.close()
      await local.close()
    }
  })
})

const tlsBacking = new Map<RecordStore, { server: DatabrokerServer; local: MemoryRecordStore }>()
recordStoreConformance(
  'remote over TLS',
  async (clock) => {
    const pki = testPki()
    const sharedSecret = randomBytes(32)
    const local = new MemoryRecordStore({ clock })
    const server = await startDatabrokerServer({
      store: local,
      address: '127.0.0.1:0',
      tls: { cert: pki.server.certPem, key: pki.server.keyPem },
      sharedSecret,
      logger,
    })
    const store = createRemoteRecordStore({ urls: [server.url], sharedSecret, tls: { ca: pki.ca.certPem }, logger })
    tlsBacking.set(store, { server, local })
    return store
  },
  async (store) => {
    const b = tlsBacking.get(store)
    tlsBacking.delete(store)
    await b?.server.close()
    await b?.local.close()
  },
)
