/**
 * Services apart (issue 5, Pomerium docs: All-in-one vs split): a databroker-only process serves the store over the
 * internal API, and two proxy processes (proxy, authenticate, authorize) use it: a session made
 * through one works through the other, and the internal API refuses a user's session token
 * (hostile-input case: tokens / jwt).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { request } from 'undici'
import { internalApiStatus } from '../fixtures/internal-api.js'
import { MAIN_SCRIPT, REPO_ROOT } from '../fixtures/portcullis.js'
import { freePort, signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

const sharedSecret = randomBytes(32).toString('base64')
let databroker: ChildProcess
let grpcUrl = ''
let setup: SignInSetup

before(async () => {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-databroker-'))
  const file = join(dir, 'config.yaml')
  writeFileSync(file, `services: databroker\ngrpc_address: 127.0.0.1:${port}\nshared_secret: ${sharedSecret}\nlog_level: info\n`)
  databroker = spawn(process.execPath, [MAIN_SCRIPT, '--config', file], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the databroker did not start:\n${out}`)), 15_000)
    databroker.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      const m = /"listener":"grpc","url":"([^"]+)"/.exec(out)
      if (m?.[1]) {
        grpcUrl = m[1]
        clearTimeout(timer)
        resolve()
      }
    })
    databroker.stderr?.on('data', (c: Buffer) => (out += c.toString()))
    databroker.once('exit', () => reject(new Error(`the databroker exited:\n${out}`)))
  })
  setup = await startSignInSetup({
    settings: { services: 'proxy,authenticate,authorize', databroker_service_url: grpcUrl, shared_secret: sharedSecret },
  })
})
after(async () => {
  await setup?.close()
  if (databroker && databroker.exitCode === null && databroker.signalCode === null) {
    databroker.kill('SIGTERM')
    await new Promise((r) => databroker.once('exit', r))
  }
})

test('a session made through one proxy process works through another, both on one databroker process', async () => {
  const b = await setup.startAnother()
  const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
  const cookie = `_pomerium=${jar.forHost(new URL(setup.app).host)['_pomerium']}`
  for (const url of [`${setup.app}/x`, `https://app.localhost:${b.port}/x`]) {
    const res = await request(url, { dispatcher: setup.dispatcher, headers: { cookie, accept: 'text/html' } })
    await res.body.dump()
    assert.equal(res.statusCode, 200, url)
  }
})

test('the internal API refuses a user session token', async () => {
  const { jar } = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
  const handle = jar.forHost(new URL(setup.app).host)['_pomerium'] as string
  for (const authorization of [`Bearer ${handle}`, `Pomerium ${handle}`, `Bearer Pomerium-${handle}`]) {
    const status = await internalApiStatus(grpcUrl, '/databroker/v1/listTypes', authorization)
    assert.equal(status, 401, authorization.slice(0, 16))
  }
})

test('workers: 2 share one databroker through their primary: every worker knows every session', async () => {
  const workers = await startSignInSetup({ settings: { workers: 2 } })
  try {
    const { jar } = await signIn(workers, `${workers.app}/`, 'alice@example.com', 'alice-password')
    const cookie = `_pomerium=${jar.forHost(new URL(workers.app).host)['_pomerium']}`
    for (let i = 0; i < 30; i++) {
      // A new connection each time, so the kernel spreads them over both workers.
      const res = await request(`${workers.app}/n${i}`, { dispatcher: workers.dispatcher, headers: { cookie, accept: 'text/html', connection: 'close' } })
      await res.body.dump()
      assert.equal(res.statusCode, 200, `request ${i}`)
    }
    // Sign-out through any worker ends the session for all of them.
    const out = await request(`${workers.app}/.pomerium/sign_out`, { dispatcher: workers.dispatcher, headers: { cookie } })
    await out.body.dump()
    const atAuthn = await request(String(out.headers['location']), { dispatcher: workers.dispatcher, headers: { cookie: `_pomerium=${jar.forHost(new URL(workers.authn).host)['_pomerium']}` } })
    await atAuthn.body.dump()
    let refused = 0
    for (let i = 0; i < 10; i++) {
      const res = await request(`${workers.app}/after${i}`, { dispatcher: workers.dispatcher, headers: { cookie, accept: 'text/html', connection: 'close' } })
      await res.body.dump()
      if (res.statusCode === 302) refused++
      else await new Promise((r) => setTimeout(r, 100))
    }
    assert.ok(refused >= 8, `signed out on every worker (${refused}/10 refused)`)
  } finally {
    await workers.close()
  }
})

test('with the databroker down, a session the proxy cannot verify gets 503 and a clear page, never access', async () => {
  const { signSessionHandle } = await import('../../src/session/session-handle.js')
  const { request: req } = await import('undici')
  databroker.kill('SIGKILL')
  await new Promise((r) => databroker.once('exit', r))
  // A correctly signed handle naming a session this proxy has never seen: only the store could say.
  const idpId = new URL(String((await req(`${setup.app}/`, { dispatcher: setup.dispatcher })).headers['location'])).searchParams.get('pomerium_idp_id') as string
  const now = Math.floor(Date.now() / 1000)
  const handle = signSessionHandle({ iss: 'authn.localhost', sub: 'ghost', aud: ['app.localhost'], iat: now, exp: now + 600, jti: 'no-such-session', idp_id: idpId }, Buffer.from(sharedSecret, 'base64'))
  const res = await req(`${setup.app}/`, { dispatcher: setup.dispatcher, headers: { cookie: `_pomerium=${handle}`, accept: 'text/html' } })
  const body = await res.body.text()
  assert.equal(res.statusCode, 503)
  assert.match(body, /session store is unavailable/)
})
