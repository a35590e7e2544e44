/**
 * The `portcullis` command line as a person types it (through main.ts): every command has its own
 * `--help`, and a command that needs a configuration says how to pass one instead of running
 * (or validating) an empty one.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { policyCommand } from './policy-explain.js'
import { users } from './users.js'

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs main.ts with only PATH in the environment, so no setting comes from this test's environment. */
function portcullis(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const main = fileURLToPath(new URL('./main.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '', ...env } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    // A command that wrongly starts serving would never exit: bound the wait (generously: the
    // machine may be busy, and a kill shows as exit code null, which no test expects).
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

test('every command has its own --help, printed on stdout with exit 0', async () => {
  const cases: [string[], RegExp][] = [
    [['--help'], /portcullis validate --config FILE[\s\S]*portcullis COMMAND --help/],
    [['serve', '--help'], /^Usage: portcullis \[serve\] --config FILE/],
    [['validate', '-h'], /^Usage: portcullis validate --config FILE/],
    [['demo', '--help'], /^Usage: portcullis demo[\s\S]*PORT=9090/],
    [['help'], /portcullis tcp HOST:PORT[\s\S]*portcullis udp HOST:PORT[\s\S]*portcullis routes list[\s\S]*portcullis k8s exec-credential[\s\S]*portcullis logout/],
    [['tcp', '--help'], /^Usage: portcullis tcp HOST:PORT \[--listen ADDR \| --listen -\]/],
    [['routes', '--help'], /^Usage: portcullis routes list/],
  ]
  for (const [args, expected] of cases) {
    const run = await portcullis(args)
    assert.equal(run.code, 0, `portcullis ${args.join(' ')}: ${run.stderr}`)
    assert.match(run.stdout, expected, `portcullis ${args.join(' ')}`)
  }
  // The commands with subcommands parse their own arguments: in-process is enough.
  for (const args of [['--help'], ['explain', '--help'], ['explain', '-h'], ['explain', '--url', 'https://a.example.com/', '--help']]) {
    let text = ''
    assert.equal(policyCommand(args, (s) => (text += s)), 0, `policy ${args.join(' ')}: ${text}`)
    assert.match(text, /^Usage:\n {2}portcullis policy explain --config FILE --url URL/, `policy ${args.join(' ')}`)
  }
  for (const args of [['--help'], ['add', '--help'], ['hash-password', '-h']]) {
    let text = ''
    const sink = new Writable({ write: (c: Buffer, _e, done) => ((text += c.toString()), done()) })
    assert.equal(await users(args, { stdin: Readable.from([]), stdout: sink, stderr: sink }), 0)
    assert.match(text, /portcullis users add --file FILE --email EMAIL/)
  }
})

test('validate without --config says a config is needed and how to pass it (exit 2)', async () => {
  const run = await portcullis(['validate'])
  assert.equal(run.code, 2)
  assert.match(run.stderr, /no configuration given[\s\S]*portcullis validate --config FILE/)
  assert.doesNotMatch(run.stdout, /valid/)
})

test('bare portcullis with no config explains what it needs instead of serving on :443', async () => {
  const run = await portcullis([])
  assert.equal(run.code, 2)
  assert.match(run.stderr, /no configuration given[\s\S]*portcullis --config FILE[\s\S]*portcullis demo/)
  assert.equal(run.stdout, '', 'nothing started, nothing logged')
})

test('policy explain without --config says so', () => {
  let text = ''
  const saved = process.env
  process.env = { PATH: saved['PATH'] }
  try {
    assert.equal(policyCommand(['explain', '--url', 'https://a.example.com/'], (s) => (text += s)), 2)
  } finally {
    process.env = saved
  }
  assert.match(text, /--config FILE is required/)
})

test('a configuration from the environment alone is still accepted, as in Pomerium', async () => {
  const run = await portcullis(['validate'], { ADDRESS: '127.0.0.1:0', INSECURE_SERVER: 'true' })
  assert.equal(run.code, 0, run.stderr + run.stdout)
  assert.match(run.stdout, /configuration: valid, 0 routes/)
})

test('validate --config FILE still validates the file', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'portcullis-main-')), 'config.yaml')
  writeFileSync(file, 'insecure_server: true\nroutes:\n  - from: http://a.localhost\n    to: http://127.0.0.1:9\n    allow_public_unauthenticated_access: true\n')
  const run = await portcullis(['validate', '--config', file])
  assert.equal(run.code, 0, run.stderr + run.stdout)
  assert.match(run.stdout, /valid, 1 route\b/)
})
