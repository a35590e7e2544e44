/**
 * Storage benchmark (issue 5): prints markdown tables of
 *
 *   1. record store operations per second for each backend (memory, file = SQLite in a temp dir,
 *      postgres = a fresh database on the real server, remote = the internal API over h2c on
 *      loopback with a memory store behind): single and batched puts, sequential and concurrent
 *      gets, and the catch-up over 100,000 records written beforehand (`sync(0)` and
 *      `syncLatest`);
 *   2. the heap taken by the authorize path's synced session copy (`SessionCache`) for 100,000
 *      realistic sessions (sealed tokens of realistic sizes, claims, one user record each);
 *   3. sign-out propagation between two instances on one PostgreSQL database: the time from a
 *      delete through instance A until instance B's session cache no longer returns the session.
 *
 * Run: `npm run bench:storage` (or `npx tsx bench/storage.ts`). Needs `global.gc`: without
 * `--expose-gc` it re-runs itself as `node --expose-gc --import tsx bench/storage.ts`.
 *
 * Knobs (environment):
 *   BENCH_STORAGE_BACKENDS   comma list of memory,file,postgres,remote (default all)
 *   BENCH_STORAGE_PARTS      comma list of ops,memory,signout (default all)
 *   BENCH_STORAGE_RECORDS    records for the catch-up measurement (default 100000)
 *   BENCH_STORAGE_SESSIONS   sessions for the memory measurement (default 100000)
 *   BENCH_STORAGE_SECONDS    time limit of one throughput cell, in seconds (default 3)
 *   BENCH_STORAGE_MAX_OPS    operation limit of one throughput cell (default 300000)
 *   BENCH_STORAGE_CONCURRENCY  concurrent gets (default 32)
 *   BENCH_STORAGE_PAYLOAD_BYTES  size of a benchmark record's data (default 1024)
 *   BENCH_STORAGE_SYNC_SECONDS   time limit of one catch-up (default 60)
 *   BENCH_STORAGE_ROUNDS     sign-out rounds (default 200)
 *   BENCH_STORAGE_POSTGRES_URL   admin URL (default postgres://postgres@127.0.0.1:5432/postgres);
 *                            each run creates its own databases and drops them afterwards
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { SessionCache } from '../src/session/session-cache.js'
import { SESSION_TYPE, SessionStore, sessionTokenKey } from '../src/session/session-store.js'
import type { NewSession } from '../src/session/session-store.js'
import { userFromClaims } from '../src/session/users.js'
import { MemoryRecordStore } from '../src/databroker/memory.js'
import { createPostgresRecordStore } from '../src/databroker/postgres/index.js'
import { createRemoteRecordStore } from '../src/databroker/remote.js'
import { startDatabrokerServer } from '../src/databroker/server.js'
import { createSqliteRecordStore } from '../src/databroker/sqlite/index.js'
import type { DataRecord, RecordInput, RecordStore } from '../src/databroker/types.js'
import { MAX_BODY_BYTES } from '../src/internal/index.js'
import { createLogger } from '../src/shared/log.js'

// --- knobs -----------------------------------------------------------------------------------

const env = process.env

function numberEnv(name: string, fallback: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${raw}`)
  return n
}

function listEnv<T extends string>(name: string, all: readonly T[]): T[] {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return [...all]
  const picked = raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
  for (const p of picked) {
    if (!(all as readonly string[]).includes(p)) throw new Error(`${name}: unknown ${p} (want some of ${all.join(',')})`)
  }
  return picked as T[]
}

const BACKENDS = listEnv('BENCH_STORAGE_BACKENDS', ['memory', 'file', 'postgres', 'remote'] as const)
const PARTS = listEnv('BENCH_STORAGE_PARTS', ['ops', 'memory', 'signout'] as const)
const RECORDS = Math.floor(numberEnv('BENCH_STORAGE_RECORDS', 100_000))
const SESSIONS = Math.floor(numberEnv('BENCH_STORAGE_SESSIONS', 100_000))
const CELL_SECONDS = numberEnv('BENCH_STORAGE_SECONDS', 3)
const CELL_MAX_OPS = Math.floor(numberEnv('BENCH_STORAGE_MAX_OPS', 300_000))
const CONCURRENCY = Math.floor(numberEnv('BENCH_STORAGE_CONCURRENCY', 32))
const PAYLOAD_BYTES = Math.floor(numberEnv('BENCH_STORAGE_PAYLOAD_BYTES', 1024))
const SYNC_SECONDS = numberEnv('BENCH_STORAGE_SYNC_SECONDS', 60)
const ROUNDS = Math.floor(numberEnv('BENCH_STORAGE_ROUNDS', 200))
const PG_ADMIN = env['BENCH_STORAGE_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres'
/** Records per put while loading the catch-up data (not measured). */
const LOAD_BATCH = 1000
const PUT_BATCH = 100
/** Realistic token sizes (characters) for the memory measurement; see `realisticSession`. */
const TOKEN_SIZES = { accessToken: 1200, idToken: 1000, refreshToken: 700 } as const
const SIGNOUT_TARGET_P99_MS = 500

const logger = createLogger('disabled')
const THIS_FILE = fileURLToPath(import.meta.url)
const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url))

// --- small helpers ---------------------------------------------------------------------------

const now = (): number => performance.now()

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

function fmt(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
}

function messageOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' ? `${code}: ${err.message}` : err.message
}

/** Polls `done` on every turn of the event loop (I/O runs in between) until it holds or `ms` pass. */
async function until(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = now() + ms
  while (!done()) {
    if (now() > deadline) return false
    await new Promise<void>((r) => setImmediate(r))
  }
  return true
}

/** Waits with short sleeps (for long waits where a busy loop would steal the CPU from the work). */
async function eventually(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = now() + ms
  while (!done()) {
    if (now() > deadline) return false
    await sleep(10)
  }
  return true
}

/** Rejects when `p` has not settled within `ms` (a hang becomes a reported failure). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Things that went wrong in src/ during the run, printed at the end. */
const problems: string[] = []

/**
 * Stops a SessionCache; if `stop()` hangs (its sync does not end on abort), says so and closes
 * the store, which ends the sync, so that the benchmark can go on.
 */
async function stopCache(cache: SessionCache, store: RecordStore, what: string): Promise<void> {
  const stopping = cache.stop()
  const stopped = await Promise.race([stopping.then(() => true), sleep(2000).then(() => false)])
  if (stopped) return
  problems.push(`${what}: SessionCache.stop() had not returned 2 s after it was called (its sync did not end on abort); closing the store released it`)
  await store.close()
  await stopping
}

function randomToken(length: number): string {
  return randomBytes(Math.ceil((length * 3) / 4)).toString('base64url').slice(0, length)
}

/** A JWT-shaped token of about `length` characters (header.payload.signature). */
function jwtLike(length: number): string {
  const header = randomToken(100)
  const signature = randomToken(342) // RS256: 256 bytes
  return `${header}.${randomToken(Math.max(16, length - header.length - signature.length - 2))}.${signature}`
}

// --- PostgreSQL ------------------------------------------------------------------------------

async function postgresVersion(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_ADMIN, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")
    return rows[0]?.v ?? 'unknown'
  } catch {
    return undefined
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** Databases created and not dropped yet: dropped on SIGINT/SIGTERM too. */
const liveDatabases = new Set<string>()

async function dropDatabase(name: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_ADMIN })
  await c.connect()
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    liveDatabases.delete(name)
  } finally {
    await c.end()
  }
}

/** A fresh database, dropped by `drop()` (as in test/integration/storage.test.ts). */
async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `portcullis_bench_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: PG_ADMIN })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  liveDatabases.add(name)
  await admin.end()
  const url = new URL(PG_ADMIN)
  url.pathname = `/${name}`
  return { url: url.href, drop: () => dropDatabase(name) }
}

// --- part 1: operations per second -------------------------------------------------------------

type BackendName = (typeof BACKENDS)[number]

interface OpenStore {
  readonly store: RecordStore
  close(): Promise<void>
}

async function openBackend(name: BackendName): Promise<OpenStore> {
  switch (name) {
    case 'memory': {
      const store = new MemoryRecordStore()
      return { store, close: () => store.close() }
    }
    case 'file': {
      const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-storage-'))
      const store = createSqliteRecordStore({ path: join(dir, 'bench.sqlite'), logger })
      return {
        store,
        async close() {
          await store.close()
          rmSync(dir, { recursive: true, force: true })
        },
      }
    }
    case 'postgres': {
      const db = await freshDatabase()
      try {
        const store = await createPostgresRecordStore({ connectionString: db.url, logger })
        return {
          store,
          async close() {
            await store.close()
            await db.drop()
          },
        }
      } catch (err) {
        await db.drop()
        throw err
      }
    }
    case 'remote': {
      const sharedSecret = randomBytes(32)
      const local = new MemoryRecordStore()
      const server = await startDatabrokerServer({ store: local, address: '127.0.0.1:0', sharedSecret, logger })
      const store = createRemoteRecordStore({ urls: [server.url], sharedSecret, logger })
      return {
        store,
        async close() {
          await store.close()
          await server.close()
          await local.close()
        },
      }
    }
  }
}

interface Rate {
  /** Units (operations or records) per second. */
  readonly rate: number
  readonly units: number
  readonly seconds: number
  /** Per-call latencies in ms, sorted. */
  readonly latencies: number[]
  readonly misses: number
}

/**
 * Runs `op(i)` with `concurrency` callers until `maxCalls` calls or `CELL_SECONDS` have passed,
 * after a short unmeasured warm-up. Each call counts `unitsPerCall` units. `op` returns false for
 * a miss (a get that found nothing), which is counted.
 */
async function measure(
  op: (i: number) => Promise<boolean>,
  options: { concurrency: number; maxCalls: number; unitsPerCall?: number; warmupCalls?: number },
): Promise<Rate> {
  const { concurrency, maxCalls, unitsPerCall = 1, warmupCalls = 200 } = options
  let next = 0
  const warmEnd = now() + 500
  while (next < warmupCalls && now() < warmEnd) await op(next++)
  const first = next
  const limit = first + maxCalls
  const latencies: number[] = []
  let misses = 0
  const start = now()
  const deadline = start + CELL_SECONDS * 1000
  const worker = async (): Promise<void> => {
    while (next < limit && now() < deadline) {
      const i = next++
      const t = now()
      const hit = await op(i)
      latencies.push(now() - t)
      if (!hit) misses++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (now() - start) / 1000
  const calls = next - first
  latencies.sort((a, b) => a - b)
  return { rate: (calls * unitsPerCall) / seconds, units: calls * unitsPerCall, seconds, latencies, misses }
}

interface CatchUp {
  readonly seconds: number
  readonly records: number
  readonly error?: string
}

interface BackendResult {
  readonly name: BackendName
  readonly error?: string
  readonly load?: CatchUp
  readonly sync?: CatchUp
  readonly syncLatest?: CatchUp
  readonly putOne?: Rate
  readonly putBatch?: Rate
  readonly getOne?: Rate
  readonly getConcurrent?: Rate
}

const SYNC_TYPE = 'bench.sync'
const PUT_TYPE = 'bench.put'
const recordId = (i: number): string => `r${String(i).padStart(7, '0')}`

function payload(i: number, blob: string): { n: number; at: number; owner: string; blob: string } {
  return { n: i, at: Date.now(), owner: `user${i}@example.com`, blob }
}

async function benchBackend(name: BackendName): Promise<BackendResult> {
  process.stderr.write(`[ops] ${name}: opening\n`)
  let opened: OpenStore
  try {
    opened = await openBackend(name)
  } catch (err) {
    return { name, error: `could not open: ${messageOf(err)}` }
  }
  const { store } = opened
  const blob = randomToken(PAYLOAD_BYTES)
  try {
    // Load the catch-up records (batched; timed for information only).
    process.stderr.write(`[ops] ${name}: writing ${fmtInt(RECORDS)} records\n`)
    let t = now()
    for (let i = 0; i < RECORDS; i += LOAD_BATCH) {
      const batch: RecordInput[] = []
      for (let k = i; k < Math.min(RECORDS, i + LOAD_BATCH); k++) batch.push({ type: SYNC_TYPE, id: recordId(k), data: payload(k, blob) })
      await store.put(batch)
    }
    const load: CatchUp = { seconds: (now() - t) / 1000, records: RECORDS }

    // sync(0): iterate every change from the start, stop once all are read.
    process.stderr.write(`[ops] ${name}: sync(0) catch-up\n`)
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), SYNC_SECONDS * 1000)
    let read = 0
    let syncError: string | undefined
    t = now()
    try {
      for await (const r of store.sync(0, { signal: abort.signal })) {
        if (r.type === SYNC_TYPE && ++read >= RECORDS) break
      }
    } catch (err) {
      syncError = messageOf(err)
    } finally {
      clearTimeout(timer)
      abort.abort()
    }
    const syncSeconds = (now() - t) / 1000
    if (syncError === undefined && read < RECORDS) syncError = `timed out after ${SYNC_SECONDS} s`
    const sync: CatchUp = { seconds: syncSeconds, records: read, ...(syncError === undefined ? {} : { error: syncError }) }


    const randomId = (): string => recordId(Math.floor(Math.random() * RECORDS))
    process.stderr.write(`[ops] ${name}: get\n`)
    const getOne = await measure(async () => (await store.get(SYNC_TYPE, randomId())) !== undefined, {
      concurrency: 1,
      maxCalls: CELL_MAX_OPS,
    })
    const getConcurrent = await measure(async () => (await store.get(SYNC_TYPE, randomId())) !== undefined, {
      concurrency: CONCURRENCY,
      maxCalls: CELL_MAX_OPS,
    })
    process.stderr.write(`[ops] ${name}: put\n`)
    const putOne = await measure(
      async (i) => {
        await store.put([{ type: PUT_TYPE, id: `p${i}`, data: payload(i, blob) }])
        return true
      },
      { concurrency: 1, maxCalls: CELL_MAX_OPS },
    )
    const putBatch = await measure(
      async (i) => {
        const batch: RecordInput[] = []
        for (let k = 0; k < PUT_BATCH; k++) batch.push({ type: PUT_TYPE, id: `b${i}-${k}`, data: payload(k, blob) })
        await store.put(batch)
        return true
      },
      { concurrency: 1, maxCalls: Math.ceil(CELL_MAX_OPS / PUT_BATCH), unitsPerCall: PUT_BATCH, warmupCalls: 5 },
    )

    // syncLatest: one snapshot of the type. Last, because a failed one can leave the remote
    // client's connection unusable (see the note in the output).
    process.stderr.write(`[ops] ${name}: syncLatest catch-up\n`)
    let syncLatest: CatchUp
    t = now()
    try {
      const latest = await store.syncLatest(SYNC_TYPE)
      syncLatest = { seconds: (now() - t) / 1000, records: latest.records.length }
    } catch (err) {
      const seconds = (now() - t) / 1000
      const after = await store.serverInfo().then(
        () => '',
        (e: unknown) => `; afterwards every call on this store fails too (${messageOf(e)})`,
      )
      syncLatest = { seconds, records: 0, error: messageOf(err) + after }
    }
    return { name, load, sync, syncLatest, getOne, getConcurrent, putOne, putBatch }
  } catch (err) {
    return { name, error: messageOf(err) }
  } finally {
    await opened.close().catch((err: unknown) => process.stderr.write(`[ops] ${name}: close failed: ${messageOf(err)}\n`))
  }
}

function printOps(results: readonly BackendResult[]): void {
  console.log(`\n## 1. Record store operations per second\n`)
  console.log(
    `Records of ${fmtInt(PAYLOAD_BYTES)} bytes of data; each cell runs at most ${fmtInt(CELL_MAX_OPS)} operations or ${CELL_SECONDS} s, ` +
      `after a short warm-up. Gets read random ids among the ${fmtInt(RECORDS)} records written beforehand. ` +
      `latency = per-call p50 / p99 in ms.\n`,
  )
  const cell = (r: Rate | undefined): string => (r ? fmtInt(r.rate) : '—')
  const lat = (r: Rate | undefined): string => (r ? `${fmt(percentile(r.latencies, 0.5), 3)} / ${fmt(percentile(r.latencies, 0.99), 3)}` : '—')
  const rows = results.map((r) =>
    r.error !== undefined
      ? [r.name, `**failed: ${r.error}**`, '', '', '', '', '', '']
      : [
          r.name,
          cell(r.putOne),
          lat(r.putOne),
          cell(r.putBatch),
          cell(r.getOne),
          lat(r.getOne),
          cell(r.getConcurrent),
          lat(r.getConcurrent),
        ],
  )
  console.log(
    table(
      [
        'backend',
        'put (1 record, sequential) ops/s',
        'put latency ms',
        `put (batches of ${PUT_BATCH}) records/s`,
        'get (sequential) ops/s',
        'get latency ms',
        `get (${CONCURRENCY} concurrent) ops/s`,
        `get ×${CONCURRENCY} latency ms`,
      ],
      rows,
    ),
  )
  const misses = results.flatMap((r) => [r.getOne, r.getConcurrent].filter((x): x is Rate => x !== undefined && x.misses > 0).map(() => r.name))
  if (misses.length > 0) console.log(`\n**Gets that found nothing on: ${[...new Set(misses)].join(', ')} (they should all hit).**`)

  console.log(`\n### Catch-up over ${fmtInt(RECORDS)} records written beforehand\n`)
  const catchUp = (c: CatchUp | undefined): [string, string] =>
    c === undefined ? ['—', '—'] : c.error !== undefined ? [`**failed after ${fmt(c.seconds, 2)} s (${c.records} read): ${c.error}**`, '—'] : [fmt(c.seconds, 2), fmtInt(c.records / c.seconds)]
  console.log(
    table(
      ['backend', `write (batches of ${LOAD_BATCH}) s`, 'write records/s', '`sync(0)` until all read, s', 'sync records/s', '`syncLatest` snapshot s', 'syncLatest records/s'],
      results.map((r) => (r.error !== undefined ? [r.name, `**failed: ${r.error}**`, '', '', '', '', ''] : [r.name, ...catchUp(r.load), ...catchUp(r.sync), ...catchUp(r.syncLatest)])),
    ),
  )
}

// --- part 2: memory of the session cache -------------------------------------------------------

const LIFETIME_MS = 14 * 3600_000

/** A session as a sign-in through an OpenID Connect provider makes it (see authenticate/service.ts). */
function realisticSession(i: number): { input: NewSession; claims: Record<string, unknown> } {
  const sub = randomUUID()
  const sid = randomUUID()
  const iat = Math.floor(Date.now() / 1000)
  const claims: Record<string, unknown> = {
    iss: 'https://idp.example.com/realms/corp',
    sub,
    aud: 'portcullis',
    iat,
    exp: iat + 3600,
    auth_time: iat,
    sid,
    email: `user${i}@example.com`,
    email_verified: true,
    name: `Example User ${i}`,
    given_name: 'Example',
    family_name: `User ${i}`,
    preferred_username: `user${i}`,
    groups: ['all-employees', 'engineering', `team-${i % 50}`, 'vpn-users', 'github-org-members'],
  }
  return {
    claims,
    input: {
      userId: sub,
      idpId: 'Z2VuZXJpYy1vaWRjLWlkcA',
      accessToken: jwtLike(TOKEN_SIZES.accessToken),
      refreshToken: jwtLike(TOKEN_SIZES.refreshToken),
      idToken: jwtLike(TOKEN_SIZES.idToken),
      tokenExpiresAt: Date.now() + 3600_000,
      tokenObtainedAt: Date.now(),
      claims,
      idpSubject: sub,
      idpSessionId: sid,
    },
  }
}

/** Signs `count` sessions in through `SessionStore` (tokens sealed as in runtime.ts), each with its user. */
async function createSessions(store: RecordStore, count: number, tokenKey: Buffer): Promise<string[]> {
  const sessions = new SessionStore(store, { lifetimeMs: LIFETIME_MS, tokenKey })
  const ids: string[] = []
  for (let i = 0; i < count; i++) {
    const { input, claims } = realisticSession(i)
    const { session } = await sessions.create(input)
    await sessions.putUser(userFromClaims(input.userId, claims))
    ids.push(session.id)
  }
  return ids
}

/** Heap after full collections (a few, with turns of the event loop between for finalizers). */
async function heapAfterGc(): Promise<{ heap: number; external: number }> {
  const gc = globalThis.gc
  if (gc === undefined) throw new Error('global.gc is not exposed (run node with --expose-gc)')
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise<void>((r) => setImmediate(r))
  }
  const m = process.memoryUsage()
  return { heap: m.heapUsed, external: m.external }
}

/** A store that hands out fresh copies of record data, as records decoded from remote or PostgreSQL are. */
function copyingStore(inner: RecordStore): RecordStore {
  const copy = (r: DataRecord): DataRecord => ({ ...r, data: JSON.parse(JSON.stringify(r.data)) as unknown })
  return {
    get: async (type, id) => {
      const r = await inner.get(type, id)
      return r && copy(r)
    },
    put: async (records) => (await inner.put(records)).map(copy),
    delete: (type, id) => inner.delete(type, id),
    query: async (options) => {
      const q = await inner.query(options)
      return { ...q, records: q.records.map(copy) }
    },
    listTypes: () => inner.listTypes(),
    serverInfo: () => inner.serverInfo(),
    sync: (afterVersion, options) => ({
      async *[Symbol.asyncIterator]() {
        for await (const r of inner.sync(afterVersion, options)) yield copy(r)
      },
    }),
    syncLatest: async (type) => {
      const l = await inner.syncLatest(type)
      return { ...l, records: l.records.map(copy) }
    },
    setOptions: (type, options) => inner.setOptions(type, options),
    acquireLease: (name, ms) => inner.acquireLease(name, ms),
    renewLease: (name, id, ms) => inner.renewLease(name, id, ms),
    releaseLease: (name, id) => inner.releaseLease(name, id),
    close: () => inner.close(),
  }
}

async function waitForCache(cache: SessionCache, ids: readonly string[], ms: number): Promise<boolean> {
  return eventually(() => cache.ready && ids.every((id) => cache.get(id) !== undefined), ms)
}

interface MemoryRow {
  readonly what: string
  /** Sessions the row is about (default SESSIONS). */
  readonly sessions?: number
  readonly bytes?: number
  readonly external?: number
  readonly seconds?: number
  readonly note: string
}

/** Row (e): a SessionCache in this process over a remote store served by the child. */
async function remoteCacheRow(target: ChildStore, sharedSecret: Buffer, wireBytes: number): Promise<MemoryRow> {
  const what = `SessionCache over remote, ${fmtInt(target.count)} sessions (databroker in a child process)`
  const remote = createRemoteRecordStore({ urls: [target.url], sharedSecret, logger })
  try {
    const base = await heapAfterGc()
    const cache = new SessionCache(remote, logger)
    const t = now()
    cache.start()
    const filled = await waitForCache(cache, target.sample, 30_000)
    const seconds = (now() - t) / 1000
    if (filled) {
      const after = await heapAfterGc()
      await stopCache(cache, remote, 'memory part, cache over remote')
      return {
        what,
        sessions: target.count,
        bytes: after.heap - base.heap,
        external: after.external - base.external,
        seconds,
        note: 'this process holds only the cache and the remote client, as a worker (workers: N) does; the store is in the child',
      }
    }
    await stopCache(cache, remote, 'memory part, cache over remote')
    // Why: ask once more on a fresh connection, then check the cache's own connection.
    const fresh = createRemoteRecordStore({ urls: [target.url], sharedSecret, logger })
    const reason = await fresh.syncLatest(SESSION_TYPE).then(
      (l) => `syncLatest answered ${l.records.length} records`,
      (err: unknown) => messageOf(err),
    )
    await fresh.close()
    const connection = await remote.serverInfo().then(
      () => 'the cache\'s connection still answers other calls',
      (err: unknown) => `every other call on the cache's connection fails since (serverInfo: ${messageOf(err)})`,
    )
    return {
      what,
      sessions: target.count,
      note:
        `**FAILED: not filled after ${fmt(seconds, 0)} s. syncLatest fails with "${reason}": its one JSON answer would be ` +
        `~${fmtInt((wireBytes * target.count) / 1048576)} MiB, over MAX_BODY_BYTES = ${MAX_BODY_BYTES / 1048576} MiB; ` +
        `the cache stays not-ready and retries every second; ${connection}**`,
    }
  } finally {
    await remote.close()
  }
}

interface MemoryResult {
  readonly rows: MemoryRow[]
  /** JSON bytes of one stored session record's data, and of one user record's. */
  readonly recordBytes: number
  readonly userBytes: number
  /** Bytes of one session record as a line of the internal API. */
  readonly wireBytes: number
}

/** Sessions in the child's second, smaller store. */
const SMALL_SESSIONS = Math.min(SESSIONS, 10_000)

interface ChildStore {
  readonly url: string
  readonly count: number
  /** Some of its session ids (1 in 100, and the last), to check that a cache holds them all. */
  readonly sample: string[]
}

interface ChildReady {
  readonly full: ChildStore
  readonly small: ChildStore
}

function sampleOf(ids: readonly string[]): string[] {
  const step = Math.max(1, Math.floor(ids.length / 100))
  return ids.filter((_, i) => i % step === 0 || i === ids.length - 1)
}

/** The databroker child: a memory store with `SESSIONS` sessions served over h2c; stops when stdin closes. */
async function databrokerChild(): Promise<void> {
  const sharedSecret = Buffer.from(env['BENCH_STORAGE_SECRET'] ?? '', 'hex')
  const store = new MemoryRecordStore()
  const ids = await createSessions(store, SESSIONS, sessionTokenKey(sharedSecret))
  const server = await startDatabrokerServer({ store, address: '127.0.0.1:0', sharedSecret, logger })
  // A second store with the first SMALL_SESSIONS of them, for when the full one cannot be synced.
  const small = new MemoryRecordStore()
  const first = (await store.syncLatest(SESSION_TYPE)).records.slice(0, SMALL_SESSIONS)
  for (let i = 0; i < first.length; i += LOAD_BATCH) {
    await small.put(first.slice(i, i + LOAD_BATCH).map((r) => ({ type: r.type, id: r.id, data: r.data })))
  }
  const smallServer = await startDatabrokerServer({ store: small, address: '127.0.0.1:0', sharedSecret, logger })
  const ready: ChildReady = {
    full: { url: server.url, count: ids.length, sample: sampleOf(ids) },
    small: { url: smallServer.url, count: first.length, sample: sampleOf(first.map((r) => r.id)) },
  }
  process.stdout.write(`READY ${JSON.stringify(ready)}\n`)
  process.stdin.resume()
  await new Promise<void>((r) => process.stdin.once('end', r).once('close', r))
  await server.close()
  await smallServer.close()
  await store.close()
  await small.close()
  process.exit(0)
}

async function startDatabrokerChild(sharedSecret: Buffer): Promise<ChildReady & { child: ChildProcess }> {
  const child = spawn(process.execPath, ['--max-old-space-size=8192', '--import', 'tsx', THIS_FILE], {
    cwd: REPO_ROOT,
    env: { ...env, BENCH_STORAGE_CHILD: 'databroker', BENCH_STORAGE_SECRET: sharedSecret.toString('hex') },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ready = await new Promise<ChildReady>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the databroker child did not start within 300 s')), 300_000)
    child.once('exit', (code) => reject(new Error(`the databroker child exited (${code})`)))
    lines.on('line', (line) => {
      if (!line.startsWith('READY ')) return
      clearTimeout(timer)
      resolve(JSON.parse(line.slice('READY '.length)) as ChildReady)
    })
  })
  return { child, ...ready }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  child.stdin?.end()
  const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)])
  if (!done) {
    child.kill('SIGKILL')
    await exited
  }
}

async function benchMemory(): Promise<MemoryResult> {
  const sharedSecret = randomBytes(32)
  const tokenKey = sessionTokenKey(sharedSecret)
  const rows: MemoryRow[] = []

  // The worker-deployment child (row e) makes its own sessions meanwhile.
  const childStarting = startDatabrokerChild(sharedSecret)
  childStarting.catch(() => undefined)

  // (a) The memory store alone.
  process.stderr.write(`[memory] creating ${fmtInt(SESSIONS)} sessions in a memory store\n`)
  const before = await heapAfterGc()
  const memory = new MemoryRecordStore()
  let t = now()
  const ids = await createSessions(memory, SESSIONS, tokenKey)
  const createSeconds = (now() - t) / 1000
  const withStore = await heapAfterGc()
  const sampleRecord = await memory.get(SESSION_TYPE, ids[0] as string)
  const recordBytes = Buffer.byteLength(JSON.stringify(sampleRecord?.data))
  const userRecord = await memory.get('type.googleapis.com/user.User', (sampleRecord?.data as { userId: string }).userId)
  const userBytes = Buffer.byteLength(JSON.stringify(userRecord?.data))
  rows.push({
    what: 'memory store alone (sessions + one user record each)',
    bytes: withStore.heap - before.heap,
    external: withStore.external - before.external,
    seconds: createSeconds,
    note: `the backing store, subtracted from the rows below; includes the benchmark's list of the ids (~${fmtInt((ids.length * 56) / 1e6)} MB); time = creating them through SessionStore (sealing)`,
  })

  // (b) SessionCache over that in-process memory store: its data objects are the store's own.
  process.stderr.write('[memory] SessionCache over the in-process memory store\n')
  const sharedCache = new SessionCache(memory, logger)
  t = now()
  sharedCache.start()
  if (!(await waitForCache(sharedCache, ids, 120_000))) throw new Error('the session cache over memory did not fill within 120 s')
  let seconds = (now() - t) / 1000
  let after = await heapAfterGc()
  rows.push({
    what: 'SessionCache over an in-process memory store',
    bytes: after.heap - withStore.heap,
    external: after.external - withStore.external,
    seconds,
    note: 'the cache map only: it shares the frozen data objects of the memory store (a setup Portcullis does not use: the memory backend reads the store directly)',
  })
  await stopCache(sharedCache, memory, 'memory part, cache over the memory store')

  // (c) SessionCache with its own copies, as with postgres or a remote databroker.
  process.stderr.write('[memory] SessionCache with its own copies of the records\n')
  const copying = copyingStore(memory)
  const base = await heapAfterGc()
  const ownCache = new SessionCache(copying, logger)
  t = now()
  ownCache.start()
  if (!(await waitForCache(ownCache, ids, 120_000))) throw new Error('the copying session cache did not fill within 120 s')
  seconds = (now() - t) / 1000
  after = await heapAfterGc()
  rows.push({
    what: 'SessionCache holding its own copies (as over postgres / remote), slim form',
    bytes: after.heap - base.heap,
    external: after.external - base.external,
    seconds,
    note: 'heap after the cache filled minus heap with the store alone: the map plus one slim copy of each session record (no sealed tokens; what a postgres or worker instance holds)',
  })

  // (d) Every session read once by the request path (SessionStore.getForRequest): the copy holds
  // the slim form (no sealed tokens), which is the session itself; nothing is decrypted.
  process.stderr.write('[memory] reading every session once through SessionStore.getForRequest\n')
  const reader = new SessionStore(copying, { lifetimeMs: LIFETIME_MS, tokenKey, cache: ownCache })
  const beforeRead = await heapAfterGc()
  t = now()
  let missing = 0
  for (const id of ids) if ((await reader.getForRequest(id)) === undefined) missing++
  seconds = (now() - t) / 1000
  after = await heapAfterGc()
  // Keep the reader (and so its WeakMap of opened sessions) alive across the measurement.
  if ((await reader.getForRequest(ids[0] as string)) === undefined) missing++
  rows.push({
    what: '+ every session read once by the request path (SessionStore.getForRequest)',
    bytes: after.heap - beforeRead.heap,
    external: after.external - beforeRead.external,
    seconds,
    note: `on top of the row above: the copy's slim form is the session (nothing sealed to open); callers that need the tokens (refresh, sign-out, token-forwarding routes) read the record from the store${missing > 0 ? `; **${missing} reads found nothing**` : ''}`,
  })
  await stopCache(ownCache, copying, 'memory part, cache with its own copies')
  await memory.close()

  // (e) The worker deployment: the store (memory + databroker server) in another process.
  process.stderr.write(`[memory] SessionCache over remote: databroker child with ${fmtInt(SESSIONS)} sessions\n`)
  const ready = await childStarting
  const wireBytes = Buffer.byteLength(JSON.stringify({ type: SESSION_TYPE, id: ids[0], version: 1e6, data: sampleRecord?.data, modifiedAt: Date.now() })) + 1
  try {
    const full = await remoteCacheRow(ready.full, sharedSecret, wireBytes)
    rows.push(full)
    if (full.bytes === undefined && ready.small.count < ready.full.count) {
      process.stderr.write(`[memory] SessionCache over remote: the child's ${fmtInt(ready.small.count)}-session store\n`)
      rows.push(await remoteCacheRow(ready.small, sharedSecret, wireBytes))
    }
  } finally {
    await stopChild(ready.child)
  }
  return { rows, recordBytes, userBytes, wireBytes }
}

function printMemory(result: MemoryResult): void {
  console.log(`\n## 2. Memory of the authorize session cache for ${fmtInt(SESSIONS)} sessions\n`)
  console.log(
    `Sessions made through SessionStore.create with tokens sealed as in runtime.ts (access ${TOKEN_SIZES.accessToken}, ` +
      `ID ${TOKEN_SIZES.idToken}, refresh ${TOKEN_SIZES.refreshToken} characters before sealing), 15 claims incl. 5 groups, ` +
      `and one user record each. A stored session record is ${fmtInt(result.recordBytes)} bytes of JSON, a user record ${fmtInt(result.userBytes)} ` +
      `(~${fmtInt(result.wireBytes)} bytes on the internal API). Heap = process.memoryUsage().heapUsed after global.gc(); ` +
      `external = Buffers etc. outside the V8 heap.\n`,
  )
  console.log(
    table(
      ['what', 'heap MB', 'bytes / session', 'external MB', 'fill time s', 'what exactly was measured'],
      result.rows.map((r) => [
        r.what,
        r.bytes === undefined ? '—' : fmt(r.bytes / 1e6, 1),
        r.bytes === undefined ? '—' : fmtInt(r.bytes / (r.sessions ?? SESSIONS)),
        r.external === undefined ? '—' : fmt(r.external / 1e6, 1),
        r.seconds === undefined ? '—' : fmt(r.seconds, 2),
        r.note,
      ]),
    ),
  )
}

// --- part 3: sign-out propagation ----------------------------------------------------------------

interface Stack {
  readonly store: RecordStore
  readonly cache: SessionCache
  readonly sessions: SessionStore
}

async function openStack(url: string, tokenKey: Buffer): Promise<Stack> {
  const store = await createPostgresRecordStore({ connectionString: url, logger })
  const cache = new SessionCache(store, logger)
  cache.start()
  const sessions = new SessionStore(store, { lifetimeMs: LIFETIME_MS, tokenKey, cache })
  if (!(await eventually(() => cache.ready, 10_000))) throw new Error('session cache not ready within 10 s')
  return { store, cache, sessions }
}

interface SignOutResult {
  readonly created: number[]
  readonly signedOut: number[]
  readonly deleteCall: number[]
  readonly failures: string[]
}

async function benchSignOut(): Promise<SignOutResult> {
  const db = await freshDatabase()
  const tokenKey = sessionTokenKey(randomBytes(32))
  const stacks: Stack[] = []
  const result: SignOutResult = { created: [], signedOut: [], deleteCall: [], failures: [] }
  try {
    // Opened one after the other: the first creates the schema.
    const a = await openStack(db.url, tokenKey)
    stacks.push(a)
    const b = await openStack(db.url, tokenKey)
    stacks.push(b)
    const warmup = 10
    for (let round = 0; round < warmup + ROUNDS; round++) {
      try {
        await signOutRound(a, b, round, round >= warmup, result)
      } catch (err) {
        result.failures.push(`round ${round}: ${messageOf(err)}`)
      }
      await sleep(Math.random() * 10)
    }
  } finally {
    for (const [i, s] of stacks.entries()) {
      await stopCache(s.cache, s.store, `sign-out part, instance ${i === 0 ? 'A' : 'B'}`)
      await s.store.close()
    }
    await db.drop()
  }
  return result
}

/** One round: create through A, wait for B, delete through A, time until B's cache drops it. */
async function signOutRound(a: Stack, b: Stack, round: number, measured: boolean, result: SignOutResult): Promise<void> {
  const STEP_MS = 10_000
  const { input } = realisticSession(round)
  const { session } = await within(a.sessions.create(input), STEP_MS, "A's SessionStore.create")
  let t = now()
  if (!(await until(() => b.cache.get(session.id) !== undefined, 5000))) {
    result.failures.push(`round ${round}: B's cache did not get the new session within 5 s`)
    return
  }
  if (measured) result.created.push(now() - t)
  if ((await within(b.sessions.get(session.id), STEP_MS, "B's SessionStore.get")) === undefined) {
    result.failures.push(`round ${round}: B's SessionStore.get did not return the new session`)
  }
  t = now()
  let deleteDone = 0
  const deletion = a.sessions.delete(session.id).then(() => {
    deleteDone = now()
  })
  const gone = await until(() => b.cache.get(session.id) === undefined, 5000)
  const goneAt = now()
  await within(deletion, STEP_MS, "A's SessionStore.delete")
  if (!gone) {
    result.failures.push(`round ${round}: B's cache still returned the session 5 s after the delete`)
    return
  }
  if (measured) {
    result.signedOut.push(goneAt - t)
    result.deleteCall.push(deleteDone - t)
  }
  if ((await within(b.sessions.get(session.id), STEP_MS, "B's SessionStore.get")) !== undefined) {
    result.failures.push(`round ${round}: B's SessionStore.get still returned the session after its cache dropped it`)
  }
}

function printSignOut(r: SignOutResult): void {
  console.log(`\n## 3. Sign-out propagation between two instances on PostgreSQL\n`)
  console.log(
    `Two stacks (each its own postgres record store, SessionCache and SessionStore, one fresh database) in this process; ` +
      `${ROUNDS} rounds after 10 warm-up rounds: create a session through A, wait until B's cache has it, delete it through A ` +
      `(SessionStore.delete, as sign-out does) and poll B's cache on every event-loop turn until it no longer returns it. ` +
      `Target: sign-out p99 < ${SIGNOUT_TARGET_P99_MS} ms.\n`,
  )
  const row = (what: string, xs: number[]): string[] => {
    const s = [...xs].sort((x, y) => x - y)
    return [what, String(s.length), fmt(percentile(s, 0.5), 2), fmt(percentile(s, 0.95), 2), fmt(percentile(s, 0.99), 2), fmt(s[s.length - 1] ?? Number.NaN, 2)]
  }
  console.log(
    table(
      ['ms', 'n', 'p50', 'p95', 'p99', 'max'],
      [
        row('sign-out through A → B\'s cache drops the session', r.signedOut),
        row('(A\'s delete call, start to return, for comparison)', r.deleteCall),
        row('new session through A → B\'s cache has it', r.created),
      ],
    ),
  )
  const p99 = percentile([...r.signedOut].sort((x, y) => x - y), 0.99)
  console.log(`\nSign-out p99 ${fmt(p99, 2)} ms: ${p99 < SIGNOUT_TARGET_P99_MS ? 'meets' : '**MISSES**'} the target of < ${SIGNOUT_TARGET_P99_MS} ms.`)
  if (r.failures.length > 0) console.log(`\n**${r.failures.length} failures:**\n${r.failures.slice(0, 20).map((f) => `- ${f}`).join('\n')}`)
}

// --- main ------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = now()
  const pgVersion = await postgresVersion()
  const cpu = cpus()
  console.log('# Portcullis storage benchmark\n')
  console.log(
    `Machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${fmt(totalmem() / 2 ** 30, 1)} GiB RAM, ` +
      `${platform()} ${release()}, Node ${process.version}, PostgreSQL ${pgVersion ?? 'not reachable'} (${new URL(PG_ADMIN).host}). ` +
      `Date ${new Date().toISOString()}. Load average at start ${loadavg().map((x) => fmt(x, 2)).join(' / ')} ` +
      `(other work on the machine skews the figures).`,
  )
  const wantsPostgres = (PARTS.includes('ops') && BACKENDS.includes('postgres')) || PARTS.includes('signout')
  if (pgVersion === undefined && wantsPostgres) {
    console.log(`\n**!!! PostgreSQL is not answering at ${new URL(PG_ADMIN).host}: the postgres rows and the sign-out propagation part are SKIPPED !!!**`)
    process.stderr.write(`\n*** PostgreSQL is not answering at ${new URL(PG_ADMIN).host}: postgres rows SKIPPED ***\n\n`)
  }

  if (PARTS.includes('ops')) {
    const results: BackendResult[] = []
    for (const name of BACKENDS) {
      if (name === 'postgres' && pgVersion === undefined) {
        results.push({ name, error: 'SKIPPED: PostgreSQL not reachable' })
        continue
      }
      results.push(await benchBackend(name))
    }
    printOps(results)
  }
  if (PARTS.includes('memory')) printMemory(await benchMemory())
  if (PARTS.includes('signout')) {
    if (pgVersion === undefined) console.log('\n## 3. Sign-out propagation between two instances on PostgreSQL\n\n**SKIPPED: PostgreSQL not reachable.**')
    else printSignOut(await benchSignOut())
  }
  if (problems.length > 0) console.log(`\n## Problems seen during the run\n\n${problems.map((p) => `- **${p}**`).join('\n')}`)
  console.log(`\nTotal run time ${fmt((now() - started) / 1000, 0)} s; load average at the end ${loadavg().map((x) => fmt(x, 2)).join(' / ')}.`)
}

if (env['BENCH_STORAGE_CHILD'] === 'databroker') {
  await databrokerChild()
} else if (typeof globalThis.gc !== 'function') {
  // Heap figures need global.gc(): run again under node --expose-gc (with room for 100k sessions twice over).
  const args = ['--expose-gc', '--max-old-space-size=8192', '--import', 'tsx', THIS_FILE, ...process.argv.slice(2)]
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: 'inherit' })
  process.exitCode = await new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))))
} else {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: dropping ${liveDatabases.size} benchmark database(s)\n`)
      void Promise.allSettled([...liveDatabases].map(dropDatabase)).then(() => process.exit(130))
    })
  }
  await main()
  // Pools and sockets are closed; anything left (a stuck timer) must not keep the benchmark alive.
  process.exit(0)
}
