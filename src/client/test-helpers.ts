/**
 * A stand-in for the Portcullis server, for the client's unit tests: answers CONNECT (TCP) and
 * the CONNECT-UDP upgrade with a status the test chooses, serves the programmatic login
 * endpoint, a fake identity provider page that redirects to the client's loopback listener with
 * a token, and the routes API. On a 200 CONNECT it plays the upstream: it collects what the
 * client sends until the client's FIN, then sends it all back and ends (a half-close test).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'

/** An unsigned compact JWT (the client never verifies it). */
export function fakeJwt(sub: string, expSeconds = Math.floor(Date.now() / 1000) + 3600): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  return `${part({ alg: 'ES256' })}.${part({ sub, exp: expSeconds })}.c2ln`
}

export interface SeenRequest {
  /** The client certificate's subject CN when the server asked for one. */
  readonly clientCn?: string
  readonly method: string
  readonly url: string
  readonly headers: IncomingMessage['headers']
}

export interface FakeServer {
  readonly url: string
  readonly port: number
  /** CONNECT and upgrade requests, in order. */
  readonly tunnels: SeenRequest[]
  /** How often the login endpoint was asked. */
  readonly logins: () => number
  /** The token the next sign-in hands out; requests carrying it are admitted. */
  token: string
  /** Decides a tunnel request's status when it carries a valid token (default 200 / 101). */
  status: (req: SeenRequest) => number
  /** Bytes sent right after a 200's or 101's head, in the same write (tunnel data the client must keep). */
  early: Buffer
  close(): Promise<void>
}

function answer(socket: Duplex, status: number, reason: string, body: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}

const REASONS: Record<number, string> = { 302: 'Found', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' }

export interface FakeTls {
  readonly cert: string
  readonly key: string
  /** Asks for (and requires) a client certificate from this CA. */
  readonly clientCa?: string
}

/** `tls`: serve HTTPS on https://localhost:PORT instead of cleartext. */
export async function startFakeServer(tls?: FakeTls): Promise<FakeServer> {
  let logins = 0
  const sockets = new Set<Socket>()
  const state: FakeServer = {
    url: '',
    port: 0,
    tunnels: [],
    logins: () => logins,
    token: fakeJwt('alice'),
    status: (req) => (req.method === 'CONNECT' ? 200 : 101),
    early: Buffer.alloc(0),
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
  const authorized = (req: IncomingMessage): boolean => req.headers.authorization === `Pomerium ${state.token}`
  const tunnel = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const cn = tls?.clientCa !== undefined ? String((req.socket as TLSSocket).getPeerCertificate().subject.CN) : undefined
    const seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, ...(cn !== undefined ? { clientCn: cn } : {}) }
    state.tunnels.push(seen)
    socket.on('error', () => undefined)
    if (!authorized(req)) {
      socket.end(`HTTP/1.1 302 Found\r\nlocation: ${state.url}/.pomerium/sign_in\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`)
      return
    }
    const status = state.status(seen)
    if (status === 101) {
      socket.write(Buffer.concat([Buffer.from('HTTP/1.1 101 Switching Protocols\r\nupgrade: connect-udp\r\ncapsule-protocol: ?1\r\nconnection: Upgrade\r\n\r\n'), state.early]))
      return
    }
    if (status !== 200) return answer(socket, status, REASONS[status] ?? 'Error', `${status} from the fake server\nsecond line\n`)
    socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n'), state.early]))
    const received: Buffer[] = head.length > 0 ? [head] : []
    socket.on('data', (c: Buffer) => received.push(c))
    socket.on('end', () => socket.end(Buffer.concat(received)))
  }
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', state.url)
    if (url.pathname === '/.pomerium/api/v1/login') {
      logins++
      const redirect = url.searchParams.get('pomerium_redirect_uri') ?? ''
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`${state.url}/fake-idp?redirect=${encodeURIComponent(redirect)}`)
      return
    }
    if (url.pathname === '/fake-idp') {
      const target = new URL(url.searchParams.get('redirect') ?? '')
      target.searchParams.set('pomerium_jwt', state.token)
      res.writeHead(302, { location: target.toString() })
      res.end()
      return
    }
    if (url.pathname === '/.pomerium/api/v1/routes') {
      if (!authorized(req)) {
        res.writeHead(302, { location: `${state.url}/.pomerium/sign_in` })
        res.end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({
          routes: [
            { id: '1', name: 'Database', type: 'tcp', from: 'tcp+https://db.example.com:5432', description: '', logo_url: '', connect_command: 'portcullis tcp db.example.com:5432' },
            { id: '2', name: 'Wiki', type: 'http', from: 'https://wiki.example.com', description: 'docs', logo_url: '' },
          ],
        }),
      )
      return
    }
    res.writeHead(404)
    res.end('not found\n')
  }
  const server: Server = tls
    ? createTlsServer({ cert: tls.cert, key: tls.key, ...(tls.clientCa !== undefined ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}) }, handler)
    : createServer(handler)
  server.on(tls ? 'secureConnection' : 'connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('connect', tunnel)
  server.on('upgrade', tunnel)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  Object.assign(state, { url: tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`, port })
  return state
}

/** The tests' "browser": follows the sign-in URL's redirects to the client's loopback listener. */
export async function followSignIn(url: string): Promise<void> {
  const res = await fetch(url)
  await res.text()
  if (res.status !== 200) throw new Error(`the loopback listener answered ${res.status}`)
}
