import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { assertRejectsWithCode, createManualClock, recordStoreConformance } from './conformance.test-helpers.js'
import { DataBrokerError, isDataBrokerError } from './errors.js'
import { MemoryRecordStore } from './memory.js'
import {
  createSqliteRecordStore,
  resolveSqliteFile,
  SQLITE_FILE_NAME,
  SqliteOpenError,
  SqliteRecordStore,
  sqlitePathFromUrl,
} from './sqlite/index.js'
import type { SqliteOpenFailure } from './sqlite/index.js'
import type { DataRecord, FieldValue, RecordStore } from './types.js'
import type { Logger } from '../shared/log.js'

const root = mkdtempSync(join(tmpdir(), 'portcullis-sqlite-'))
after(() => rmSync(root, { recursive: true, force: true }))

let counter = 0
/** A fresh database file path in the test directory. */
function freshPath(): string {
  return join(root, `db-${++counter}.sqlite`)
}

function removeDatabase(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true })
}

recordStoreConformance(
  'sqlite',
  (clock) => Promise.resolve(createSqliteRecordStore({ path: freshPath(), clock })),
  (store) => {
    if (store instanceof SqliteRecordStore) removeDatabase(store.path)
    return Promise.resolve()
  },
)

const CASE = { timeout: 15_000 }

/** Collects what a sync reports until it has been quiet for `quietMs`. */
async function drain(store: RecordStore, after: number, type?: string): Promise<DataRecord[]> {
  const quietMs = 30
  const out: DataRecord[] = []
  const it = store.sync(after, type === undefined ? {} : { type })[Symbol.asyncIterator]()
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const quiet = new Promise<'quiet'>((r) => {
        timer = setTimeout(() => r('quiet'), quietMs)
      })
      const next = await Promise.race([it.next(), quiet])
      clearTimeout(timer)
      if (next === 'quiet' || next.done === true) return out
      out.push(next.value)
    }
  } finally {
    await it.return?.()
  }
}

/** Asserts that `fn` throws a `SqliteOpenError` with `reason` whose message names `path`. */
function assertOpenError(fn: () => unknown, reason: SqliteOpenFailure, path: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SqliteOpenError, `expected SqliteOpenError, got ${String(err)}`)
    assert.equal(err.reason, reason, err.message)
    assert.equal(err.path, path)
    assert.ok(err.message.includes(path), `message names the file: ${err.message}`)
    return true
  })
}

describe('SqliteRecordStore specifics', () => {
  it('persists records, tombstones, versions, options and leases across reopen', CASE, async () => {
    const path = freshPath()
    const clock = createManualClock()
    const first = createSqliteRecordStore({ path, clock })
    let info: Awaited<ReturnType<RecordStore['serverInfo']>>
    let lease: string | undefined
    let put: DataRecord[]
    try {
      put = await first.put([
        { type: 'session', id: 's1', data: { user: 'u1', n: 1.5, ok: true, none: null } },
        { type: 'user', id: 'u1', data: 'Ann' },
        { type: 'user', id: 'u2', data: ['x'] },
      ])
      clock.advance(10)
      await first.delete('user', 'u2')
      await first.setOptions('session', { ttlMs: 60_000 })
      lease = await first.acquireLease('identity-manager', 30_000)
      assert.ok(lease)
      info = await first.serverInfo()
    } finally {
      await first.close()
    }
    assert.equal(existsSync(`${path}-wal`), false, 'close checkpoints and removes the WAL')

    const second = createSqliteRecordStore({ path, clock })
    try {
      assert.deepEqual(await second.serverInfo(), info, 'server version and latest version')
      assert.deepEqual(await second.get('session', 's1'), put[0])
      assert.deepEqual(await second.get('user', 'u1'), put[1])
      assert.equal(await second.get('user', 'u2'), undefined)
      const changes = await drain(second, 0)
      assert.deepEqual(
        changes.map((r) => `${r.type}/${r.id}@${r.version}${r.deletedAt ? ' deleted' : ''}`),
        [`session/s1@${put[0]?.version}`, `user/u1@${put[1]?.version}`, 'user/u2@4 deleted'],
      )
      assert.equal(changes[2]?.deletedAt?.getTime(), clock.now())
      const [next] = await second.put([{ type: 't', id: 'x', data: 1 }])
      assert.equal(next?.version, info.latestRecordVersion + 1, 'versions continue')

      assert.equal(await second.acquireLease('identity-manager', 1_000), undefined, 'lease held')
      assert.equal(await second.renewLease('identity-manager', lease, 30_000), true)
      clock.advance(30_000)
      assert.ok(await second.acquireLease('identity-manager', 1_000), 'then it expires')

      clock.advance(30_000) // 60 s since s1 was put: the persisted TTL expires it
      assert.equal(await second.get('session', 's1'), undefined)
    } finally {
      await second.close()
    }
  })

  it('a new file gets a new server version', CASE, async () => {
    const a = createSqliteRecordStore({ path: freshPath() })
    const b = createSqliteRecordStore({ path: freshPath() })
    try {
      assert.notEqual((await a.serverInfo()).serverVersion, (await b.serverInfo()).serverVersion)
      assert.equal((await a.serverInfo()).latestRecordVersion, 0)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('a second store on the file in this process fails until the first closes', CASE, async () => {
    const path = freshPath()
    const first = createSqliteRecordStore({ path })
    try {
      await first.put([{ type: 't', id: 'x', data: 1 }])
      assertOpenError(() => createSqliteRecordStore({ path, busyTimeoutMs: 0 }), 'locked', path)
      // Through a directory path as well: it resolves to the same file.
      const dir = join(root, `dir-${++counter}`)
      mkdirSync(dir)
      const inDir = createSqliteRecordStore({ path: dir })
      try {
        assertOpenError(
          () => createSqliteRecordStore({ path: `${dir}/`, busyTimeoutMs: 0 }),
          'locked',
          join(dir, SQLITE_FILE_NAME),
        )
      } finally {
        await inDir.close()
      }
      assert.equal((await first.get('t', 'x'))?.data, 1, 'the holder is unaffected')
    } finally {
      await first.close()
    }
    const again = createSqliteRecordStore({ path })
    try {
      assert.equal((await again.get('t', 'x'))?.data, 1)
    } finally {
      await again.close()
    }
  })

  it('another process cannot open a file that a store holds', CASE, async () => {
    const path = freshPath()
    const store = createSqliteRecordStore({ path })
    try {
      await store.put([{ type: 't', id: 'x', data: 1 }])
      const module = fileURLToPath(new URL('./sqlite/index.ts', import.meta.url))
      const script = `
        import { createSqliteRecordStore } from ${JSON.stringify(module)}
        try {
          createSqliteRecordStore({ path: ${JSON.stringify(path)}, busyTimeoutMs: 50 })
          console.log('opened')
        } catch (err) {
          console.log(JSON.stringify({ reason: err.reason, message: err.message }))
        }
      `
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', '--input-type=module', '-e', script],
          { timeout: 10_000 },
          (err, out, errOut) => {
            if (err) reject(new Error(`child failed: ${errOut}`, { cause: err }))
            else resolve(out)
          },
        )
      })
      const result = JSON.parse(stdout.trim()) as { reason?: string; message?: string }
      assert.equal(result.reason, 'locked')
      assert.ok(result.message?.includes(path), result.message)
      assert.match(result.message ?? '', /one process/)
      assert.equal((await store.get('t', 'x'))?.data, 1)
    } finally {
      await store.close()
    }
  })

  it('a file that is not a database gives a clear error naming it', CASE, () => {
    const path = freshPath()
    writeFileSync(path, 'this is not an SQLite database\n'.repeat(100))
    assertOpenError(() => createSqliteRecordStore({ path }), 'corrupt', path)
  })

  it('an unreachable path gives a clear error naming it', CASE, () => {
    const blocker = join(root, `blocker-${++counter}`)
    writeFileSync(blocker, 'a file, not a directory')
    const path = join(blocker, 'databroker.sqlite')
    assertOpenError(() => createSqliteRecordStore({ path }), 'unreadable', path)
    const dir = join(blocker, 'sub')
    assertOpenError(() => createSqliteRecordStore({ path: `${dir}/` }), 'unreadable', dir)
  })

  it('refuses SQLite files of other applications and of newer schemas', CASE, async () => {
    const foreign = freshPath()
    const db = new Database(foreign)
    db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY)')
    db.close()
    assertOpenError(() => createSqliteRecordStore({ path: foreign }), 'incompatible', foreign)

    const newer = freshPath()
    await createSqliteRecordStore({ path: newer }).close()
    const db2 = new Database(newer)
    db2.pragma('user_version = 99')
    db2.close()
    assert.throws(
      () => createSqliteRecordStore({ path: newer }),
      (err: unknown) =>
        err instanceof SqliteOpenError &&
        err.reason === 'incompatible' &&
        /schema version 99/.test(err.message),
    )
  })

  it('prunes old tombstones; a sync from before them fails, after reopen too', CASE, async () => {
    const path = freshPath()
    let s = createSqliteRecordStore({ path, clock: createManualClock(), maxTombstones: 2 })
    try {
      await s.put(['a', 'b', 'c'].map((id) => ({ type: 't', id, data: id })))
      const start = (await s.serverInfo()).latestRecordVersion
      const ta = await s.delete('t', 'a')
      await s.delete('t', 'b')
      assert.ok(ta)
      assert.deepEqual(
        (await drain(s, start)).map((r) => r.id),
        ['a', 'b'],
      )
      await s.delete('t', 'c')
      await assertRejectsWithCode(
        s.sync(start)[Symbol.asyncIterator]().next(),
        'ERR_DATABROKER_SYNC_TOO_OLD',
      )
      await s.close()
      s = createSqliteRecordStore({ path, clock: createManualClock(), maxTombstones: 2 })
      await assertRejectsWithCode(
        s.sync(start)[Symbol.asyncIterator]().next(),
        'ERR_DATABROKER_SYNC_TOO_OLD',
      )
      assert.deepEqual(
        (await drain(s, ta.version)).map((r) => r.id),
        ['b', 'c'],
      )
      await s.put([{ type: 't', id: 'a', data: 'again' }])
      assert.equal((await s.get('t', 'a'))?.data, 'again')
    } finally {
      await s.close()
    }
  })

  it('sync pages through many changes in version order', CASE, async () => {
    const s = createSqliteRecordStore({ path: freshPath() })
    try {
      const batch = Array.from({ length: 1_234 }, (_, i) => ({
        type: i % 3 ? 'a' : 'b',
        id: `${i}`,
        data: i,
      }))
      await s.put(batch)
      await s.put([{ type: 'a', id: '1', data: 'updated' }])
      const got = await drain(s, 0)
      assert.equal(got.length, 1_234)
      const versions = got.map((r) => r.version)
      assert.deepEqual(versions, [...versions].sort((x, y) => x - y))
      assert.equal(got.at(-1)?.data, 'updated')
      const onlyB = await drain(s, 0, 'b')
      assert.equal(onlyB.length, 412)
      assert.ok(onlyB.every((r) => r.type === 'b'))
    } finally {
      await s.close()
    }
  })

  it('object filters pushed into SQL match the memory store exactly', CASE, async () => {
    const memory = new MemoryRecordStore()
    const sqlite = createSqliteRecordStore({ path: freshPath() })
    const data: unknown[] = [
      { a: 1, b: 'x', c: true, d: null, 'a.b': 2, 'q"x': 'y', '': 0, 'e\u0000z': 'nul' },
      { a: 1.0, b: 'x', c: false, 'a.b': 2, 'q"x': 'z', '': 0, '😀': 'smile', big: 1e21 },
      { a: '1', b: 'X', c: 1, d: 0, 'a[0]': null, 'nl\n': 'line', 'кл': 'ключ' },
      { a: [1], b: { x: 1 }, c: 'true', d: 'null', '0': 'zero', '-1': 'minus', $d: 'dollar' },
      { a: -0, b: 'x\\"y', c: null, s: 'lone \ud800', big: 1e21 },
      [1, 'x'],
      'x',
      1,
      null,
      true,
      {},
    ]
    const records = data.map((d, i) => ({
      type: 't',
      id: `r${String(i).padStart(2, '0')}`,
      data: d,
    }))
    const filters: Record<string, FieldValue>[] = [
      {},
      { a: 1 },
      { a: 0 },
      { a: '1' },
      { b: 'x' },
      { b: 'x\\"y' },
      { c: true },
      { c: false },
      { c: null },
      { d: null },
      { d: 'null' },
      { 'a.b': 2 },
      { 'q"x': 'y' },
      { '': 0 },
      { 'e\u0000z': 'nul' },
      { '😀': 'smile' },
      { 'a[0]': null },
      { 'nl\n': 'line' },
      { 'кл': 'ключ' },
      { '0': 'zero' },
      { '-1': 'minus' },
      { $d: 'dollar' },
      { big: 1e21 },
      { s: 'lone \ud800' },
      { a: Number.NaN },
      { a: Number.POSITIVE_INFINITY },
      { a: 1, b: 'x', c: true },
      { toString: 'x' },
      { missing: null },
    ]
    try {
      await memory.put(records)
      await sqlite.put(records)
      for (const filter of filters) {
        for (const page of [{}, { offset: 1, limit: 1 }]) {
          const want = await memory.query({ type: 't', filter, ...page })
          const got = await sqlite.query({ type: 't', filter, ...page })
          assert.deepEqual(
            [got.records.map((r) => r.id), got.totalCount],
            [want.records.map((r) => r.id), want.totalCount],
            `filter ${JSON.stringify(filter)} ${JSON.stringify(page)}`,
          )
          assert.deepEqual(
            got.records.map((r) => r.data),
            want.records.map((r) => r.data),
          )
        }
      }
    } finally {
      await memory.close()
      await sqlite.close()
    }
  })

  it('a predicate may call the store while a query pages through a type', CASE, async () => {
    const s = createSqliteRecordStore({ path: freshPath() })
    try {
      await s.put(
        Array.from({ length: 1_100 }, (_, i) => ({ type: 't', id: `${1_000 + i}`, data: i })),
      )
      const seen: Promise<unknown>[] = []
      const res = await s.query({
        type: 't',
        offset: 2,
        limit: 3,
        filter: (d) => {
          if (d === 600) seen.push(s.put([{ type: 'other', id: 'x', data: d }]))
          return (d as number) % 100 === 0
        },
      })
      await Promise.all(seen)
      assert.deepEqual(
        res.records.map((r) => r.data),
        [200, 300, 400],
      )
      assert.equal(res.totalCount, 11)
      assert.equal((await s.get('other', 'x'))?.data, 600)
    } finally {
      await s.close()
    }
  })

  it('a timer sweeps expired records so that waiting syncs hear of them', CASE, async () => {
    const clock = createManualClock()
    const s = createSqliteRecordStore({ path: freshPath(), clock, sweepIntervalMs: 5 })
    try {
      await s.setOptions('t', { ttlMs: 1_000 })
      const [r] = await s.put([{ type: 't', id: 'x', data: 1 }])
      assert.ok(r)
      const it = s.sync(r.version, { signal: AbortSignal.timeout(5_000) })[Symbol.asyncIterator]()
      const next = it.next()
      clock.advance(1_000)
      const got = await next
      assert.equal(got.done, false)
      assert.equal(got.value?.id, 'x')
      assert.ok(got.value?.deletedAt)
      await it.return?.()
    } finally {
      await s.close()
    }
  })

  it('rejects keys that SQLite cannot store faithfully, and invalid options', CASE, async () => {
    const s = createSqliteRecordStore({ path: freshPath() })
    try {
      const code = 'ERR_DATABROKER_INVALID_ARGUMENT'
      await assertRejectsWithCode(s.put([{ type: 't', id: 'a\ud800', data: 1 }]), code)
      await assertRejectsWithCode(s.get('\udc00', 'x'), code)
      await assertRejectsWithCode(s.acquireLease('l\ud800', 1_000), code)
      assert.deepEqual(await s.put([{ type: 't', id: '😀', data: 1 }]).then((r) => r.length), 1)
      assert.equal((await s.get('t', '😀'))?.id, '😀')
    } finally {
      await s.close()
    }
    for (const options of [{ maxTombstones: -1 }, { sweepIntervalMs: 0 }, { busyTimeoutMs: 1.5 }]) {
      assert.throws(() => createSqliteRecordStore({ path: freshPath(), ...options }), (err) =>
        isDataBrokerError(err, 'ERR_DATABROKER_INVALID_ARGUMENT'),
      )
    }
    assert.throws(() => createSqliteRecordStore({ path: '' }), DataBrokerError)
  })

  it('a path is a directory unless it names a file', CASE, async () => {
    const existingDir = join(root, `existing-${++counter}`)
    mkdirSync(existingDir)
    assert.equal(resolveSqliteFile(existingDir), join(existingDir, SQLITE_FILE_NAME))
    const withSlash = join(root, `slash-${++counter}`, 'nested')
    assert.equal(resolveSqliteFile(`${withSlash}/`), join(withSlash, SQLITE_FILE_NAME))
    assert.ok(existsSync(withSlash), 'a directory path is created')
    const pomeriumStyle = join(root, `pomerium-${++counter}`)
    assert.equal(resolveSqliteFile(pomeriumStyle), join(pomeriumStyle, SQLITE_FILE_NAME))
    for (const name of ['a.db', 'b.sqlite', 'c.SQLITE3']) {
      assert.equal(resolveSqliteFile(join(root, name)), join(root, name))
    }
    const existingFile = freshPath().replace(/\.sqlite$/, '')
    writeFileSync(existingFile, '')
    assert.equal(resolveSqliteFile(existingFile), existingFile, 'an existing (empty) file')
    const s = createSqliteRecordStore({ path: existingFile })
    try {
      assert.equal(s.path, existingFile)
      assert.deepEqual(await s.listTypes(), [])
    } finally {
      await s.close()
    }
  })

  it('parses file: URLs', CASE, () => {
    assert.equal(sqlitePathFromUrl('file:///var/lib/portcullis'), '/var/lib/portcullis')
    assert.equal(sqlitePathFromUrl('file:///var/lib/portcullis/'), '/var/lib/portcullis/')
    assert.equal(sqlitePathFromUrl('FILE:///a%20b/db.sqlite'), '/a b/db.sqlite')
    assert.equal(sqlitePathFromUrl('file://localhost/srv/db'), '/srv/db')
    assert.equal(sqlitePathFromUrl('file:/srv/db'), '/srv/db')
    assert.equal(sqlitePathFromUrl('file:data/databroker'), 'data/databroker')
    assert.equal(sqlitePathFromUrl('file:./data%2Fx.db'), './data/x.db')
    for (const bad of [
      'postgres://db/x',
      '/var/lib/x',
      'file:',
      'file://otherhost/x',
      'file:///x?mode=ro',
      'file:x#frag',
      'file:%E0%A4%A',
    ]) {
      assert.throws(
        () => sqlitePathFromUrl(bad),
        (err) => isDataBrokerError(err, 'ERR_DATABROKER_INVALID_ARGUMENT'),
        bad,
      )
    }
  })

  it('creates its directories 0700 and its files 0600 whatever the umask', CASE, async () => {
    const saved = process.umask()
    try {
      for (const umask of [0o000, 0o022, 0o027]) {
        process.umask(umask)
        const top = join(root, `private-${++counter}`)
        const dir = join(top, 'state')
        const s = createSqliteRecordStore({ path: `${dir}/` })
        try {
          await s.put([{ type: 'session', id: 's', data: { token: 'secret' } }])
          const modes = Object.fromEntries(
            [top, dir, s.path, `${s.path}-wal`, `${s.path}-shm`]
              .filter((p) => existsSync(p))
              .map((p) => [p.slice(root.length), (statSync(p).mode & 0o777).toString(8)]),
          )
          const file = s.path.slice(root.length)
          assert.ok(`${file}-wal` in modes, 'the write-ahead log exists while open')
          for (const [p, mode] of Object.entries(modes)) {
            assert.equal(mode, p === top.slice(root.length) || p === dir.slice(root.length) ? '700' : '600', `${p} with umask ${umask.toString(8)}`)
          }
        } finally {
          await s.close()
        }
      }
    } finally {
      process.umask(saved)
    }
  })

  it('leaves an existing directory and file as they are and warns when others may read the file', CASE, async () => {
    const dir = join(root, `shared-${++counter}`)
    mkdirSync(dir, { mode: 0o755 })
    chmodSync(dir, 0o755)
    const path = join(dir, 'db.sqlite')
    writeFileSync(path, '', { mode: 0o644 })
    chmodSync(path, 0o644)
    const warnings: string[] = []
    const logger = { warn: (_o: unknown, msg: string) => warnings.push(msg), info: () => undefined, debug: () => undefined, error: () => undefined } as unknown as Logger
    const s = createSqliteRecordStore({ path, logger })
    await s.close()
    assert.equal(statSync(dir).mode & 0o777, 0o755)
    assert.equal(statSync(path).mode & 0o777, 0o644)
    assert.equal(warnings.length, 1)
    assert.match(warnings[0] as string, /can be read by other users \(mode 0644\).*chmod 600/)
  })

  it('runs in WAL mode with one connection holding the lock', CASE, async () => {
    const path = freshPath()
    const s = createSqliteRecordStore({ path })
    try {
      await s.put([{ type: 't', id: 'x', data: 1 }])
      assert.ok(existsSync(`${path}-wal`), 'writes go to the write-ahead log')
      assert.equal(existsSync(`${path}-shm`), false, 'exclusive mode keeps the WAL index private')
    } finally {
      await s.close()
    }
    const db = new Database(path, { readonly: true })
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
      assert.equal(db.pragma('user_version', { simple: true }), 1)
      assert.equal(db.prepare('SELECT data FROM records').pluck().get(), '1')
    } finally {
      db.close()
    }
  })
})

describe('SqliteRecordStore damage', () => {
  it('a file damaged while open fails operations with errors naming it', CASE, async () => {
    const path = freshPath()
    const first = createSqliteRecordStore({ path })
    await first.put(
      Array.from({ length: 200 }, (_, i) => ({ type: 't', id: `${i}`, data: 'x'.repeat(2_000) })),
    )
    await first.close()
    const s = createSqliteRecordStore({ path })
    try {
      // Overwrite every page but the first (header and schema) with garbage.
      const size = statSync(path).size
      const fd = openSync(path, 'r+')
      try {
        writeSync(fd, Buffer.alloc(size - 4096, 0xa5), 0, size - 4096, 4096)
      } finally {
        closeSync(fd)
      }
      await assert.rejects(s.query({ type: 't' }), (err: unknown) => {
        assert.ok(err instanceof Error)
        assert.ok(err.message.includes(path), err.message)
        assert.match(err.message, /malformed|corrupt|not a database/i)
        return true
      })
    } finally {
      await s.close()
    }
    assert.throws(
      () => createSqliteRecordStore({ path }),
      (err: unknown) => err instanceof SqliteOpenError && err.message.includes(path),
    )
  })
})
