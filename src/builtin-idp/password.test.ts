import assert from 'node:assert/strict'
import { test } from 'node:test'

import { hashPassword, MAX_CONCURRENT, parsePhc, PasswordHasherBusyError, verifyDummy, verifyPassword } from './password.js'

/** Cheap parameters: these tests are about the format and the comparison, not the cost. */
const FAST = { m: 64, t: 1, p: 1 }

test('a hash verifies its password and nothing else; parameters come from the PHC string', async () => {
  const hash = await hashPassword('correct horse battery staple', FAST)
  assert.match(hash, /^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
  assert.equal(await verifyPassword('correct horse battery staple', hash), true)
  assert.equal(await verifyPassword('correct horse battery stapl', hash), false)
  assert.equal(await verifyPassword('', hash), false)
  const other = await hashPassword('correct horse battery staple', { m: 128, t: 2, p: 2 })
  assert.notEqual(other, hash, 'fresh salt')
  assert.equal(await verifyPassword('correct horse battery staple', other), true, 'other parameters read from the string')
})

test('the reference argon2id vector verifies (hash made by the argon2 C implementation)', async () => {
  // echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -l 32 -e
  const reference = '$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc'
  assert.equal(await verifyPassword('password', reference), true)
  assert.equal(await verifyPassword('Password', reference), false)
})

test('passwords compare as NFKC: composed and decomposed accents are the same password', async () => {
  const hash = await hashPassword('caf\u00e9-au-lait', FAST)
  assert.equal(await verifyPassword('cafe\u0301-au-lait', hash), true)
})

test('hostile: malformed, foreign or out-of-range hashes are false, never a throw', async () => {
  const good = await hashPassword('secret-password', FAST)
  const [, , v, params, salt, digest] = good.split('$') as [string, string, string, string, string, string]
  const malformed = [
    '',
    'plaintext',
    '$argon2i$v=19$m=64,t=1,p=1$' + salt + '$' + digest,
    '$argon2id$v=16$m=64,t=1,p=1$' + salt + '$' + digest,
    `$argon2id$${v}$m=64,t=1$${salt}$${digest}`,
    `$argon2id$${v}$m=64,t=1,p=1,p=1$${salt}$${digest}`,
    `$argon2id$${v}$m=064,t=1,p=1$${salt}$${digest}`,
    `$argon2id$${v}$m=99999999,t=1,p=1$${salt}$${digest}`, // 95 GiB
    `$argon2id$${v}$m=64,t=1,p=1$${salt}`,
    `$argon2id$${v}$${params}$${salt}$${digest}$extra`,
    `$argon2id$${v}$${params}$!!!!$${digest}`,
    `$argon2id$${v}$${params}$${salt}$${digest}==`,
    `$argon2id$${v}$${params}$c2FsdA$${digest}`, // 4-byte salt
    `$argon2id$${v}$${params}$${salt}$AAAA`, // 3-byte hash
    '$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW', // bcrypt
  ]
  for (const hash of malformed) {
    assert.equal(parsePhc(hash), undefined, hash)
    assert.equal(await verifyPassword('secret-password', hash), false, hash)
  }
  assert.equal(await verifyPassword('x'.repeat(5000), good), false, 'over-long password')
  assert.equal(await verifyPassword('secret-password', undefined as unknown as string), false)
})

test('the dummy check spends comparable time and is always false', async () => {
  const params = { m: 2048, t: 2, p: 1 }
  const hash = await hashPassword('secret-password', params)
  const time = async (fn: () => Promise<unknown>): Promise<number> => {
    const start = process.hrtime.bigint()
    await fn()
    return Number(process.hrtime.bigint() - start) / 1e6
  }
  const median = async (fn: () => Promise<unknown>): Promise<number> => {
    const runs: number[] = []
    for (let i = 0; i < 7; i++) runs.push(await time(fn))
    return runs.sort((a, b) => a - b)[3] as number
  }
  await verifyDummy('warm-up', params)
  const real = await median(() => verifyPassword('wrong-password', hash))
  const dummy = await median(() => verifyDummy('wrong-password', params))
  assert.equal(await verifyDummy('secret-password', params), false)
  assert.ok(dummy > real / 3 && dummy < real * 3, `dummy ${dummy} ms vs real ${real} ms`)
})

test('hostile: a burst of checks queues up to a bound, then fails fast instead of piling up memory', async () => {
  const tiny = { m: 8, t: 1, p: 1 }
  const hash = await hashPassword('secret-password', tiny)
  const results = await Promise.allSettled(Array.from({ length: MAX_CONCURRENT + 256 + 20 }, () => verifyPassword('secret-password', hash)))
  const busy = results.filter((r) => r.status === 'rejected')
  assert.equal(busy.length, 20)
  for (const r of busy) assert.ok(r.status === 'rejected' && r.reason instanceof PasswordHasherBusyError)
  assert.ok(results.every((r) => r.status === 'rejected' || r.value === true), 'the queued ones all completed')
  assert.equal(await verifyPassword('secret-password', hash), true, 'slots were all released')
})
