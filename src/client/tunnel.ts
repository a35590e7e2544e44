/**
 * Opening one tunnel through the server (docs/tunnels.md): a TCP tunnel is an HTTP/1.1 CONNECT
 * (RFC 9110 section 9.3.6; Pomerium docs: TCP over HTTP Support), a UDP tunnel an HTTP/1.1
 * CONNECT-UDP upgrade (RFC 9298 section 3; Pomerium docs: UDP over HTTP). The answer decides:
 * - 200 (CONNECT) or 101 (CONNECT-UDP): the tunnel is up; the socket is returned with any bytes
 *   that followed the head put back in it;
 * - 3xx: no or no longer valid session: sign in (once per server, shared) and try once more;
 * - 503: no healthy upstream: an error, the cached token stays (it was not refused);
 * - anything else (403, 404, ...): an error naming the status and the body's first line; the
 *   cached token is forgotten.
 */
import type { Socket } from 'node:net'
import type { JwtCache } from './jwt-cache.js'
import { readBodyFirstLine, readHead } from './http-head.js'
import { dial, type ProxyEndpoint } from './proxy.js'
import type { SignIn } from './sign-in.js'
import { CodedError } from '../shared/errors.js'

export type TunnelKind = 'tcp' | 'udp'

/** The tunnel could not be opened: `status` is the server's answer (0 when there was none). */
export class TunnelError extends CodedError {
  readonly code = 'ERR_TUNNEL_REFUSED'
  /** Portcullis' answer status, 0 when it could not be reached. */
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'TunnelError'
    this.status = status
  }
}

export interface TunnelContext {
  readonly endpoint: ProxyEndpoint
  readonly cache: JwtCache
  readonly signIn: SignIn
}

function bracket(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

/** The request head that asks for a tunnel to `host:port`. */
export function tunnelRequest(kind: TunnelKind, endpoint: ProxyEndpoint, host: string, port: number, token: string | undefined): string {
  const auth = token !== undefined ? `Authorization: Pomerium ${token}\r\n` : ''
  if (kind === 'tcp') {
    const target = `${bracket(host)}:${port}`
    return `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`
  }
  // RFC 9298 section 3: the default URI template; the host is percent-encoded (an IPv6 address's colons too).
  const path = `/.well-known/masque/udp/${encodeURIComponent(host)}/${port}/`
  return `GET ${path} HTTP/1.1\r\nHost: ${endpoint.authority}\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n${auth}\r\n`
}

/** One attempt: the socket when the tunnel is up, else the status and the body's first line. */
async function attempt(kind: TunnelKind, ctx: TunnelContext, host: string, port: number, token: string | undefined): Promise<{ socket: Socket } | { status: number; reason: string; line: string }> {
  const socket = await dial(ctx.endpoint)
  try {
    socket.write(tunnelRequest(kind, ctx.endpoint, host, port, token))
    const head = await readHead(socket)
    const up = kind === 'tcp' ? head.status === 200 : head.status === 101
    if (up) return { socket }
    const line = head.status >= 300 && head.status < 400 ? '' : await readBodyFirstLine(socket, head)
    socket.destroy()
    return { status: head.status, reason: head.reason, line }
  } catch (err) {
    socket.destroy()
    throw new TunnelError(0, `${kind === 'tcp' ? 'CONNECT' : 'CONNECT-UDP'} to ${ctx.endpoint.origin}: ${(err as Error).message}`)
  }
}

/**
 * Opens a tunnel to `host:port`, signing in on a 3xx and retrying once. The returned socket is
 * paused, with any early tunnel bytes already in its read buffer.
 */
export async function openTunnel(kind: TunnelKind, ctx: TunnelContext, host: string, port: number): Promise<Socket> {
  const { cache, endpoint } = ctx
  for (let round = 0; ; round++) {
    const token = cache.get(endpoint.cacheKey)
    const result = await attempt(kind, ctx, host, port, token)
    if ('socket' in result) return result.socket
    const { status } = result
    if (status >= 300 && status < 400) {
      if (round >= 1) {
        cache.delete(endpoint.cacheKey)
        throw new TunnelError(status, `${endpoint.origin} still asks to sign in (${status}) after signing in`)
      }
      // Another connection may have signed in while this one was asking: use that token.
      const now = cache.get(endpoint.cacheKey)
      if (now === undefined || now === token) await ctx.signIn.signIn(endpoint)
      continue
    }
    if (status !== 503) cache.delete(endpoint.cacheKey)
    const detail = result.line !== '' ? result.line : result.reason
    throw new TunnelError(status, `${endpoint.origin} refused the ${kind} tunnel to ${bracket(host)}:${port}: ${status}${detail !== '' ? ` ${detail}` : ''}`)
  }
}
