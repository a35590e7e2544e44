import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { verifyPassword } from '../builtin-idp/password.js'
import { totpAt, base32Decode } from '../builtin-idp/totp.js'
import { loadUsersFile, subjectFor } from '../builtin-idp/users.js'
import { parseArgs } from './args.js'
import { users } from './users.js'
import type { UsersIo } from './users.js'

const FAST = { m: 64, t: 1, p: 1 }
const dir = mkdtempSync(join(tmpdir(), 'portcullis-users-cli-'))
after(() => rmSync(dir, { recursive: true, force: true }))

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs `portcullis users ARGS` in-process with `input` piped on stdin. */
async function run(args: string[], input: string, tty?: { chunks: string[] }): Promise<Run> {
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown }
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  stderr.on('data', (c: Buffer) => (err += c.toString()))
  const rawModes: boolean[] = []
  if (tty) {
    stdin.isTTY = true
    stdin.setRawMode = (mode: boolean) => rawModes.push(mode)
    // A terminal sends keystrokes as the user types; one chunk per prompt here.
    const chunks = [...tty.chunks]
    stderr.on('data', (c: Buffer) => {
      if (/password: $/i.test(c.toString())) setImmediate(() => stdin.write(chunks.shift() ?? ''))
    })
  } else {
    stdin.end(input)
  }
  const io: UsersIo = { stdin, stdout, stderr, hashParams: FAST }
  const code = await users(args, io)
  if (tty) assert.equal(rawModes.at(-1), false, 'raw mode switched off again')
  return { code, stdout: out, stderr: err }
}

test('hash-password: a piped password (one trailing newline dropped) gives a PHC hash that verifies', async () => {
  const result = await run(['hash-password'], 'correct horse battery staple\n')
  assert.equal(result.code, 0, result.stderr)
  const hash = result.stdout.trim()
  assert.match(hash, /^\$argon2id\$v=19\$m=64,t=1,p=1\$/)
  assert.equal(await verifyPassword('correct horse battery staple', hash), true)
  assert.equal(await verifyPassword('correct horse battery staple\n', hash), false)
})

test('hash-password: refuses empty, short and multi-line passwords', async () => {
  for (const [input, message] of [
    ['', /empty password/],
    ['\n', /empty password/],
    ['short\n', /at least 8 characters/],
    ['first line\nsecond line\n', /line break inside/],
  ] as const) {
    const result = await run(['hash-password'], input)
    assert.equal(result.code, 1, input)
    assert.match(result.stderr, message)
    assert.equal(result.stdout, '')
  }
})

test('hash-password at a terminal: asks twice without echo, handles backspace, refuses a mismatch', async () => {
  const ok = await run(['hash-password'], '', { chunks: ['secret-passX\u007fword\r', 'secret-password\r'] })
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal(ok.stderr, 'Password: \nRepeat password: \n', 'nothing typed is echoed')
  assert.equal(await verifyPassword('secret-password', ok.stdout.trim()), true)

  const mismatch = await run(['hash-password'], '', { chunks: ['secret-password\r', 'secret-passw0rd\r'] })
  assert.equal(mismatch.code, 1)
  assert.match(mismatch.stderr, /the passwords do not match/)

  const cancelled = await run(['hash-password'], '', { chunks: ['secr\u0003'] })
  assert.equal(cancelled.code, 130)
})

test('add: appends to the list, keeps comments, and the file loads with the new user', async () => {
  const file = join(dir, 'users.yaml')
  const existing = await run(['hash-password'], 'existing-password\n')
  writeFileSync(
    file,
    `# Users of the built-in IdP. Keep this file private.
users:
  # the first admin
  - email: ada@example.com
    name: Ada   # inline comment
    password_hash: "${existing.stdout.trim()}"
`,
    { mode: 0o640 },
  )
  const result = await run(['add', '--file', file, '--email', 'Grace@Example.com', '--name', 'Grace Hopper', '--group', 'admins', '--group=navy'], 'grace-password\n')
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stderr, /added Grace@Example\.com \(sub [A-Za-z0-9_-]{22}\)/)
  const text = readFileSync(file, 'utf8')
  assert.match(text, /^# Users of the built-in IdP\. Keep this file private\.\nusers:\n {2}# the first admin\n/)
  // Everything that was there is still there, line for line (yaml only normalises the space before
  // an inline comment).
  const before = `# Users of the built-in IdP. Keep this file private.
users:
  # the first admin
  - email: ada@example.com
    name: Ada # inline comment
    password_hash: "${existing.stdout.trim()}"
`
  assert.ok(text.startsWith(before), text)
  const loaded = loadUsersFile(file)
  const grace = loaded.byEmail('grace@example.com')
  assert.ok(grace)
  assert.equal(grace.name, 'Grace Hopper')
  assert.deepEqual(grace.groups, ['admins', 'navy'])
  assert.equal(grace.sub, subjectFor('grace@example.com'))
  assert.equal(grace.totpSecret, undefined)
  assert.equal(await verifyPassword('grace-password', grace.passwordHash), true)
  assert.equal(statSync(file).mode & 0o777, 0o640, 'the file keeps its mode')

  const duplicate = await run(['add', '--file', file, '--email', 'ADA@example.com'], 'another-password\n')
  assert.equal(duplicate.code, 1)
  assert.match(duplicate.stderr, /already has a user with email ada@example\.com/)
  assert.equal(readFileSync(file, 'utf8'), text, 'file untouched')
})

test('add --totp: stores a secret and prints it with an otpauth URI that yields valid codes', async () => {
  const file = join(dir, 'totp.yaml')
  const result = await run(['add', '--file', file, '--email', 'bob@example.com', '--totp', '--issuer', 'Example IdP'], 'bob-password\n')
  assert.equal(result.code, 0, result.stderr)
  const uri = new URL(result.stdout.split('\n').find((l) => l.startsWith('otpauth://')) ?? '')
  assert.equal(decodeURIComponent(uri.pathname), '/Example IdP:bob@example.com')
  const secret = uri.searchParams.get('secret') ?? ''
  assert.match(result.stdout, new RegExp(`TOTP secret: ${secret}`))
  const bob = loadUsersFile(file).byEmail('bob@example.com')
  assert.equal(bob?.totpSecret, secret)
  assert.match(totpAt(base32Decode(secret), Date.now()), /^\d{6}$/)
  assert.equal(statSync(file).mode & 0o777, 0o600, 'a new users file is private')
  assert.match(readFileSync(file, 'utf8'), /^users:\n {2}- email: bob@example\.com\n/, 'a block list, not a flow list')
})

test('add: refuses to edit a file that does not load, and bad arguments', async () => {
  const file = join(dir, 'broken.yaml')
  writeFileSync(file, 'users:\n  - email: nope\n')
  const broken = await run(['add', '--file', file, '--email', 'x@example.com'], 'some-password\n')
  assert.equal(broken.code, 1)
  assert.match(broken.stderr, /users\[0\]\.email: required: an email address[\s\S]*fix the file first/)

  assert.equal((await run(['add', '--email', 'x@example.com'], '')).code, 2)
  assert.equal((await run(['add', '--file', file], '')).code, 2)
  assert.match((await run(['add', '--file', file, '--email', 'x@example.com', '--colour', 'red'], '')).stderr, /unknown option --colour/)
  assert.match((await run(['frobnicate'], '')).stderr, /unknown subcommand "frobnicate"/)
})

test('parseArgs: users takes the rest of the line; other commands unchanged', () => {
  assert.deepEqual(parseArgs(['users', 'add', '--file', 'u.yaml', '--config', 'x']), {
    command: 'users',
    configFile: undefined,
    errors: [],
    rest: ['add', '--file', 'u.yaml', '--config', 'x'],
    help: false,
  })
  assert.deepEqual(parseArgs(['validate', '-config=c.yaml']), { command: 'validate', configFile: 'c.yaml', errors: [], rest: [], help: false })
  assert.equal(parseArgs(['--config', 'users']).command, 'serve', 'a config file named "users" is still a config file')
})

/** The real command line, through main.ts. */
function portcullis(args: string[], input: string): Promise<Run> {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  child.stdin.end(input)
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

test('the portcullis command: users --help documents both subcommands; hash-password output verifies', async () => {
  const help = await portcullis(['users', '--help'], '')
  assert.equal(help.code, 0, help.stderr)
  assert.match(help.stdout, /portcullis users hash-password/)
  assert.match(help.stdout, /portcullis users add --file FILE --email EMAIL/)
  assert.match(help.stdout, /--totp/)

  const hashed = await portcullis(['users', 'hash-password'], 'piped-password\n')
  assert.equal(hashed.code, 0, hashed.stderr)
  const hash = hashed.stdout.trim()
  assert.match(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'the real command uses the OWASP parameters')
  assert.equal(await verifyPassword('piped-password', hash), true)

  const usage = await portcullis(['--help'], '')
  assert.match(usage.stdout, /portcullis users hash-password/)
})
