import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'

import { hashPassword } from './password.js'
import { canonicalEmail, loadUsersFile, parseUsers, subjectFor, UserStore, UsersFileError } from './users.js'

const HASH = await hashPassword('correct horse battery staple', { m: 64, t: 1, p: 1 })

function problemsOf(text: string): string[] {
  try {
    parseUsers(text, 'users.yaml')
  } catch (err) {
    assert.ok(err instanceof UsersFileError)
    assert.equal(err.file, 'users.yaml')
    assert.match(err.message, /^users file users\.yaml is invalid:/)
    return [...err.problems]
  }
  assert.fail('expected the file to be refused')
}

test('a users file loads: defaults, lookups by canonical email and by subject', () => {
  const dir = parseUsers(
    `# people
users:
  - email: Ada@Example.com
    name: Ada Lovelace
    groups: [admins, engineering, admins]
    claims: { department: research, level: 3, tags: [a, b] }
    password_hash: ${HASH}
    totp_secret: jbsw y3dp ehpk 3pxp
  - email: bob@example.com
    id: bob-1
    password_hash: '${HASH}'
    disabled: true
`,
    'users.yaml',
  )
  assert.equal(dir.users.length, 2)
  const ada = dir.byEmail('  ada@EXAMPLE.com ')
  assert.ok(ada)
  assert.equal(ada.sub, subjectFor('ada@example.com'))
  assert.match(ada.sub, /^[A-Za-z0-9_-]{22}$/)
  assert.equal(ada.email, 'Ada@Example.com')
  assert.deepEqual(ada.groups, ['admins', 'engineering'])
  assert.deepEqual(ada.claims, { department: 'research', level: 3, tags: ['a', 'b'] })
  assert.equal(ada.totpSecret, 'JBSWY3DPEHPK3PXP')
  assert.equal(ada.disabled, false)
  const bob = dir.bySub('bob-1')
  assert.equal(bob?.email, 'bob@example.com')
  assert.equal(bob?.name, 'bob@example.com', 'name defaults to the email')
  assert.equal(bob?.disabled, true)
  assert.deepEqual([...dir.claimNames].sort(), ['department', 'level', 'tags'])
  assert.deepEqual(dir.typicalHashParams, { m: 64, t: 1, p: 1 })
})

test('the subject is stable: derived from the canonical email only', () => {
  assert.equal(subjectFor('ADA@example.com '), subjectFor('ada@example.com'))
  assert.notEqual(subjectFor('ada@example.com'), subjectFor('ada@example.org'))
  // Pinned: changing the derivation would re-key every user's sessions and data.
  assert.equal(subjectFor('ada@example.com'), 'tfyF5VdV-eDQMKEKtEKbay')
  assert.equal(canonicalEmail(' \uff21da@Example.com'), 'ada@example.com')
})

test('every problem is reported with line, entry and what was expected', () => {
  const problems = problemsOf(`users:
  - email: ada@example.com
    password_hash: ${HASH}
  - email: ADA@example.com
    password_hash: ${HASH}
  - email: not-an-email
    password_hash: $2b$12$abc
    groups: admins
    pasword: x
  - email: carol@example.com
    password_hash: ${HASH}
    claims: { sub: evil, email: x@y.z, "bad name": 1 }
    totp_secret: "1234"
    disabled: "yes"
    id: "has space"
  - just a string
`)
  const expected = [
    /^line 4: users\[1\]\.email: "ADA@example.com" is already used by users\[0\]/,
    /^line 9: users\[2\]\.pasword: unknown key/,
    /^line 6: users\[2\]\.email: required: an email address/,
    /^line 7: users\[2\]\.password_hash: required: an argon2id hash .*portcullis users hash-password.*got text of 10 characters/,
    /^line 8: users\[2\]\.groups: expected a list of group names/,
    /^line 15: users\[3\]\.id: expected 1 to 255 printable ASCII/,
    /^line 12: users\[3\]\.claims: claim "sub" is set by the provider/,
    /^line 12: users\[3\]\.claims: claim "email" is set by the provider/,
    /^line 12: users\[3\]\.claims: claim name "bad name"/,
    /^line 13: users\[3\]\.totp_secret: expected a base32 secret .*only A-Z and 2-7/,
    /^line 14: users\[3\]\.disabled: expected true or false, got "yes"/,
    /^line 16: users\[4\]: expected a mapping/,
  ]
  assert.equal(problems.length, expected.length, problems.join('\n'))
  for (const pattern of expected) assert.ok(problems.some((p) => pattern.test(p)), `${pattern}\n${problems.join('\n')}`)
  assert.ok(!problems.join('\n').includes('$2b$12$abc'), 'hash values are not echoed')
})

test('file-level problems: syntax, missing list, wrong shapes, duplicate keys, unreadable file', () => {
  assert.match(problemsOf('users: [\n')[0] ?? '', /^YAML syntax:/)
  assert.deepEqual(problemsOf('people: []\n'), ['line 1: people: unknown top-level key (expected "users" and, optionally, "groups")', 'missing the top-level "users:" list'])
  assert.deepEqual(problemsOf('- a\n'), ['expected a mapping with a top-level "users:" list'])
  assert.match(problemsOf('users: {a: 1}\n')[0] ?? '', /users: expected a list of users, got a mapping/)
  assert.match(problemsOf(`users:\n  - email: a@b.c\n    email: d@e.f\n    password_hash: ${HASH}\n`)[0] ?? '', /Map keys must be unique/)
  assert.equal(parseUsers('users:\n', 'users.yaml').users.length, 0, 'an empty list is fine')
  assert.throws(() => loadUsersFile('/nonexistent/users.yaml'), (err: unknown) => err instanceof UsersFileError && /cannot be read/.test(err.message))
})

test('two users with the same explicit id are refused', () => {
  const problems = problemsOf(`users:
  - { email: a@example.com, id: same, password_hash: "${HASH}" }
  - { email: b@example.com, id: same, password_hash: "${HASH}" }
`)
  assert.deepEqual(problems, ['line 3: users[1].id: subject "same" is already used by users[0]'])
})

test('a failed reload keeps the previous users', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-users-'))
  try {
    const file = join(dir, 'users.yaml')
    writeFileSync(file, `users:\n  - { email: a@example.com, password_hash: "${HASH}" }\n`)
    const store = new UserStore(file)
    assert.equal(store.current.users.length, 1)
    writeFileSync(file, `users:\n  - { email: a@example.com, password_hash: "${HASH}" }\n  - { email: b@example.com, password_hash: "${HASH}" }\n`)
    assert.equal(store.reload().users.length, 2)
    writeFileSync(file, 'users: [\n')
    assert.throws(() => store.reload(), UsersFileError)
    assert.equal(store.current.users.length, 2)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
