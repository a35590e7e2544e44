/**
 * The databroker's internal API between real processes: databroker servers run as child
 * processes (as in split mode) and this process talks to them through `createRemoteRecordStore`.
 *
 * - A server process killed with SIGKILL (no goodbye) is failed over: with two servers on one
 *   PostgreSQL, calls continue on the other and a running sync resumes without losing a record.
 * - A user's session handle, a programmatic (`Pomerium`) token or a JWT signed with the raw shared
 *   secret is refused by the server process (hostile-input case: tokens / jwt).
 *
 * Uses the real PostgreSQL at 127.0.0.1:5432 for the two-server case; when nothing answers there
 * that case is skipped loudly, except under CI, where it fails.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import http2 from 'node:http2'
import { createInterface } from 'node:readline'
import { after, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { signSessionHandle } from '../../src/session/session-handle.js'
import { createRemoteRecordStore } from '../../src/databroker/remote.js'
import type { DataRecord } from '../../src/databroker/types.js'
import { createLogger } from '../../src/shared/log.js'

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres'
const SCHEMA = `internal_api_${process.pid}_${Date.now()}`
const logger = createLogger('disabled')
const SERVER_MODULE = fileURLToPath(new URL('../../src/databroker/server.ts', import.meta.url))
const STORES_MODULE = fileURLToPath(new URL('../../src/databroker/index.ts', import.meta.url))
const LOG_MODULE = fileURLToPath(new URL('../../src/shared/log.ts', import.meta.url))

async function postgresAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_ADMIN, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}
const pgUp = await postgresAvailable()
if (!pgUp) console.warn('\n*** PostgreSQL is not answering at 127.0.0.1:5432: the two-process failover test is SKIPPED ***\n')
const pgOptions = pgUp || process.env['CI'] !== undefined ? {} : { skip: 'PostgreSQL not reachable (CI unset)' }

/** The child: opens a store (memory, or postgres on SCHEMA), serves it, prints its URL. */
const CHILD = `
const { startDatabrokerServer } = await import(${JSON.stringify(SERVER_MODULE)})
const { MemoryRecordStore, createPostgresRecordStore } = await import(${JSON.stringify(STORES_MODULE)})
const { createLogger } = await import(${JSON.stringify(LOG_MODULE)})
const env = process.env
const store = env.STORE === 'memory'
  ? new MemoryRecordStore()
  : await createPostgresRecordStore({ connectionString: env.STORE, schema: env.SCHEMA, pool: { max: 4 } })
const server = await startDatabrokerServer({
  store, address: env.ADDRESS, sharedSecret: Buffer.from(env.SECRET, 'base64'), logger: createLogger('error'),
})
console.log(JSON.stringify({ url: server.url }))
`

interface Child {
  readonly proc: ChildProcess
  readonly url: string
}

const children = new Set<ChildProcess>()
after(() => {
  for (const c of children) c.kill('SIGKILL')
})

async function startChild(secret: Buffer, store: string): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
    env: { ...process.env, STORE: store, SCHEMA, ADDRESS: '127.0.0.1:0', SECRET: secret.toString('base64') },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.add(proc)
  proc.once('exit', () => children.delete(proc))
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('databroker child did not start')), 20_000)
    lines.on('line', (line) => {
      try {
        const { url: u } = JSON.parse(line) as { url?: string }
        if (u) {
          clearTimeout(timer)
          resolve(u)
        }
      } catch {
        // not ours
      }
    })
    proc.once('exit', (code) => reject(new Error(`databroker child exited with ${code}`)))
  })
  return { proc, url }
}

async function kill(child: Child): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return
  const exited = new Promise((r) => child.proc.once('exit', r))
  child.proc.kill('SIGKILL')
  await exited
}

async function post(url: string, authorization: string): Promise<number> {
  const session = http2.connect(url)
  try {
    return await new Promise<number>((resolve, reject) => {
      session.on('error', reject)
      const s = session.request({ ':method': 'POST', ':path': '/databroker/v1/put', authorization })
      s.on('response', (h) => resolve(Number(h[':status'])))
      s.on('error', reject)
      s.end(JSON.stringify({ records: [{ type: 't', id: 'intruder', data: 1 }] }))
    })
  } finally {
    session.destroy()
  }
}

async function take(it: AsyncIterator<DataRecord>, n: number): Promise<DataRecord[]> {
  const out: DataRecord[] = []
  while (out.length < n) {
    const r = await it.next()
    assert.equal(r.done, false, `sync ended after ${out.length} of ${n}`)
    out.push(r.value)
  }
  return out
}

describe('internal API between processes', { timeout: 120_000 }, () => {
  test('a server process refuses user-facing tokens', async () => {
    const secret = randomBytes(32)
    const child = await startChild(secret, 'memory')
    const remote = createRemoteRecordStore({ urls: [child.url], sharedSecret: secret, logger })
    try {
      const now = Math.floor(Date.now() / 1000)
      const handle = signSessionHandle(
        { iss: 'authenticate.localhost', sub: 'alice', aud: ['app.localhost'], iat: now, exp: now + 3600, jti: 's1', idp_id: 'idp' },
        secret,
      )
      const input = `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ exp: now + 60 })).toString('base64url')}`
      const rawSecretJwt = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
      for (const authorization of [`Bearer ${handle}`, `Pomerium ${handle}`, `Bearer Pomerium-${handle}`, `Bearer ${rawSecretJwt}`, '']) {
        assert.equal(await post(child.url, authorization), 401, authorization)
      }
      assert.equal(await remote.get('t', 'intruder'), undefined)
      await remote.put([{ type: 't', id: 'ok', data: 1 }])
      assert.equal((await remote.get('t', 'ok'))?.data, 1)
    } finally {
      await remote.close()
      await kill(child)
    }
  })

  test('a killed process is noticed: calls fail closed with ERR_DATABROKER_UNAVAILABLE', async () => {
    const secret = randomBytes(32)
    const child = await startChild(secret, 'memory')
    const remote = createRemoteRecordStore({ urls: [child.url], sharedSecret: secret, logger, timeoutMs: 3_000 })
    try {
      await remote.put([{ type: 't', id: 'x', data: 1 }])
      await kill(child)
      await assert.rejects(remote.get('t', 'x'), { code: 'ERR_DATABROKER_UNAVAILABLE' })
    } finally {
      await remote.close()
    }
  })

  test('two servers on one PostgreSQL: SIGKILL one mid-run, calls and sync go on', pgOptions, async () => {
    const secret = randomBytes(32)
    const pgUrl = 'postgres://postgres@127.0.0.1:5432/postgres'
    const a = await startChild(secret, pgUrl)
    const b = await startChild(secret, pgUrl)
    const remote = createRemoteRecordStore({ urls: [a.url, b.url], sharedSecret: secret, logger, timeoutMs: 5_000 })
    const admin = new pg.Client({ connectionString: PG_ADMIN })
    try {
      const syncs = [0, 1, 2].map(() => remote.sync(0, { type: 'fo', signal: AbortSignal.timeout(60_000) })[Symbol.asyncIterator]())
      const written: string[] = []
      for (let i = 0; i < 30; i++) {
        await remote.put([{ type: 'fo', id: `r${i}`, data: i }])
        written.push(`r${i}`)
      }
      const firsts = await Promise.all(syncs.map((it) => take(it, 15)))
      await kill(a)
      for (let i = 30; i < 60; i++) {
        await remote.put([{ type: 'fo', id: `r${i}`, data: i }])
        written.push(`r${i}`)
      }
      assert.equal((await remote.query({ type: 'fo' })).totalCount, 60)
      assert.ok(await remote.delete('fo', 'r0'))
      for (const [i, it] of syncs.entries()) {
        const got = [...(firsts[i] ?? []), ...(await take(it, 46))]
        assert.deepEqual(got.map((r) => r.id), [...written, 'r0'], `sync ${i}: every change once, in order`)
        assert.ok(got.at(-1)?.deletedAt)
        await it.return?.()
      }
    } finally {
      await remote.close()
      await kill(a)
      await kill(b)
      await admin.connect()
      await admin.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`)
      await admin.end()
    }
  })
})
