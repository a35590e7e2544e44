/**
 * `http+unix:///path/to/socket` upstreams (Pomerium's unix-socket scheme): requests and
 * upgrades reach a server listening on a unix socket, with the client's Host kept.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { rawHttp, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'

describe('unix socket upstreams', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-unix-'))
  const socketPath = join(dir, 'app.sock')
  let upstream: Server
  let proxy: PortcullisProcess
  const seen: { url: string; host: string | undefined }[] = []
  before(async () => {
    upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? '', host: req.headers.host })
      res.end('over unix')
    })
    upstream.on('upgrade', (_req, socket) => {
      socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n')
    })
    await new Promise<void>((r) => upstream.listen(socketPath, r))
    proxy = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      routes: [{ from: 'https://app.localhost', to: `http+unix://${socketPath}`, allow_websockets: true, allow_public_unauthenticated_access: true }],
    })
  })
  after(async () => {
    await proxy.stop()
    await new Promise<void>((r) => upstream.close(() => r()))
    rmSync(dir, { recursive: true, force: true })
  })

  it('forwards to the socket; the socket path is not a path prefix and the Host is the client\'s', async () => {
    const r = await request(`${proxy.url}/hello?x=1`, { host: 'app.localhost' })
    assert.equal(r.status, 200)
    assert.equal(r.body, 'over unix')
    assert.deepEqual(seen.at(-1), { url: '/hello?x=1', host: 'app.localhost' })
  })

  it('tunnels an allowed upgrade to the socket', async () => {
    const out = await rawHttp(proxy.port, 'GET /ws HTTP/1.1\r\nHost: app.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', { timeoutMs: 2000 })
    assert.match(out, /^HTTP\/1\.1 101/)
  })
})
