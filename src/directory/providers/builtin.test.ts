/**
 * The built-in provider's users file as a directory: declared groups keep their ids and names,
 * undeclared names become groups of their own, disabled users are left out, and an edit of the
 * file is synced within seconds (the file is watched), without waiting for the interval.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'

import { hashPassword } from '../../builtin-idp/password.js'
import { subjectFor } from '../../builtin-idp/users.js'
import { MemoryRecordStore } from '../../databroker/index.js'
import { DirectoryCopy } from '../../session/directory.js'
import { createLogger } from '../../shared/log.js'
import { DirectorySync } from '../sync.js'
import { createBuiltinDirectory } from './builtin.js'

const logger = createLogger('disabled')

test('users file groups: ids and names, undeclared groups, disabled users; an edit is synced without waiting for the interval', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-builtin-directory-'))
  const file = join(dir, 'users.yaml')
  const hash = await hashPassword('pw', { m: 256, t: 1, p: 1 })
  const write = (adaGroups: string): void =>
    writeFileSync(
      file,
      `groups:\n  - {id: grp-admins, name: admins}\nusers:\n  - email: ada@example.com\n    groups: ${adaGroups}\n    password_hash: "${hash}"\n  - email: bob@example.com\n    groups: [grp-admins]\n    disabled: true\n    password_hash: "${hash}"\n`,
    )
  write('[admins, research]')
  const store = new MemoryRecordStore()
  const copy = new DirectoryCopy(store, logger, { manages: () => true })
  copy.start()
  const sync = new DirectorySync({ store, provider: createBuiltinDirectory(file), logger, intervalMs: 3_600_000, timeoutMs: 5_000, source: 'file' })
  const keepAlive = setInterval(() => undefined, 1000)
  try {
    const first = sync.nextRound()
    sync.start()
    await first
    const ada = subjectFor('ada@example.com')
    const until = async (check: () => boolean): Promise<void> => {
      for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setTimeout(r, 10))
      assert.ok(check(), JSON.stringify(copy.lookup(ada, undefined)))
    }
    await until(() => copy.lookup(ada, undefined).groups.length === 3)
    assert.deepEqual(copy.lookup(ada, undefined).groups, ['grp-admins', 'admins', 'research'])
    assert.deepEqual(copy.lookup(subjectFor('bob@example.com'), undefined).groups, [])
    // Remove ada from admins: the watched file is synced long before the one-hour interval.
    const next = sync.nextRound()
    write('[research]')
    await next
    await until(() => !copy.lookup(ada, undefined).groups.includes('admins'))
    assert.deepEqual(copy.lookup(ada, undefined).groups, ['research'])
  } finally {
    clearInterval(keepAlive)
    await sync.stop()
    await copy.stop()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
