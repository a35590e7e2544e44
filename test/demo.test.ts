/**
 * `portcullis demo` (npm start) when one of its ports is taken: a clear message that names the
 * port and says how to choose others, before any password is printed, and no stack trace.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import type { Server } from 'node:net'
import { describe, it } from 'node:test'
import { isBuilt, MAIN_SCRIPT, REPO_ROOT } from './fixtures/portcullis.js'
import { freePortRun } from './fixtures/sign-in.js'

function runDemo(port: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN_SCRIPT, 'demo'], { cwd: REPO_ROOT, env: { ...process.env, PORT: port }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  return new Promise((resolve) => {
    // A demo that wrongly starts would never exit.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

async function occupy(port: number): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return server
}

describe('portcullis demo with a port taken', { skip: isBuilt() ? false : 'run npm run build first' }, () => {
  for (const [offset, use] of [
    [1, /the built-in identity provider, PORT\+1/],
    [2, /health checks, PORT\+2/],
    [0, /the demo itself/],
  ] as const) {
    void it(`PORT+${offset} taken: says which port and how to choose others, prints no password`, async () => {
      const port = await freePortRun(3)
      const taken = await occupy(port + offset)
      try {
        const run = await runDemo(String(port))
        assert.equal(run.code, 1, run.stdout + run.stderr)
        assert.match(run.stderr, new RegExp(`port ${port + offset} on 127\\.0\\.0\\.1 is in use`))
        assert.match(run.stderr, use)
        assert.match(run.stderr, /PORT=9090 npm start/)
        assert.doesNotMatch(run.stdout + run.stderr, /password|"level"|\n\s+at /, 'no password, no log line, no stack trace')
      } finally {
        taken.close()
      }
    })
  }

  void it('a PORT that is not a port number is refused clearly', async () => {
    const run = await runDemo('80x')
    assert.equal(run.code, 1)
    assert.match(run.stderr, /PORT=80x is not a port number/)
  })
})
