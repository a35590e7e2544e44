/**
 * `portcullis tcp host:port`: a local TCP listener (or stdin/stdout with `--listen -`, for
 * OpenSSH's `ProxyCommand`) whose every connection becomes one CONNECT tunnel through the server
 * (Pomerium docs: TCP over HTTP Support). Bytes flow both ways with backpressure (pipe), and a
 * half-close passes through: when one side ends its sending, the other side's sending is ended,
 * and the connection closes once both directions are done.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import type { Readable, Writable } from 'node:stream'
import { openTunnel, type TunnelContext } from './tunnel.js'

/**
 * Joins a local stream pair to a tunnel socket. Resolves when both directions are finished (or
 * either side failed, which tears down both).
 */
export function splice(localIn: Readable, localOut: Writable, tunnel: Socket): Promise<void> {
  return new Promise((resolve) => {
    let settled = false
    const finish = (): void => {
      if (settled) return
      settled = true
      resolve()
    }
    const fail = (): void => {
      tunnel.destroy()
      if (!localIn.destroyed) localIn.destroy()
      if (localOut !== (localIn as unknown) && !localOut.destroyed) localOut.destroy()
      finish()
    }
    let upDone = false
    let downDone = false
    const check = (): void => {
      if (upDone && downDone) {
        tunnel.destroy()
        finish()
      }
    }
    // Local → tunnel: the local FIN becomes tunnel.end() (a FIN to the server).
    localIn.pipe(tunnel)
    tunnel.once('finish', () => {
      upDone = true
      check()
    })
    // Tunnel → local: the server's FIN becomes localOut.end().
    tunnel.pipe(localOut)
    localOut.once('finish', () => {
      downDone = true
      check()
    })
    tunnel.once('error', fail)
    // A close before both halves ended cleanly is an abort (a reset), passed on to the other side.
    tunnel.once('close', () => {
      if (!(tunnel.readableEnded && tunnel.writableFinished)) fail()
    })
    localIn.once('error', fail)
    localOut.once('error', fail)
    localIn.once('close', () => {
      if (!localIn.readableEnded) fail()
    })
  })
}

export interface TcpOptions {
  readonly context: TunnelContext
  readonly host: string
  readonly port: number
  /** The user-facing messages (stderr). */
  readonly say: (line: string) => void
}

export interface TcpListener {
  /** `127.0.0.1:NNNN` as it is printed. */
  readonly address: string
  readonly port: number
  /** Stops listening and tears down the open tunnels. */
  close(): Promise<void>
}

/** Serves one local connection: opens its tunnel (the local bytes wait, paused), then splices. */
async function serveConnection(local: Socket, options: TcpOptions): Promise<void> {
  local.pause()
  let localGone = false
  const onEarlyClose = (): void => {
    localGone = true
  }
  local.once('close', onEarlyClose)
  local.on('error', () => undefined)
  let tunnel: Socket
  try {
    tunnel = await openTunnel('tcp', options.context, options.host, options.port)
  } catch (err) {
    options.say(`portcullis: ${(err as Error).message}`)
    local.destroy()
    return
  }
  local.off('close', onEarlyClose)
  if (localGone || local.destroyed) {
    tunnel.destroy()
    return
  }
  await splice(local, local, tunnel)
}

/** Listens on `listenHost:listenPort` (port 0 = any free port) and tunnels every connection. */
export function listenTcp(listenHost: string, listenPort: number, options: TcpOptions): Promise<TcpListener> {
  const sockets = new Set<Socket>()
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local) => {
    sockets.add(local)
    local.once('close', () => sockets.delete(local))
    void serveConnection(local, options)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(listenPort, listenHost, () => {
      server.off('error', reject)
      const addr = server.address() as AddressInfo
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
      resolve({
        address: `${host}:${addr.port}`,
        port: addr.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            for (const s of sockets) s.destroy()
          }),
      })
    })
  })
}

/** `--listen -`: one tunnel between stdin/stdout and the destination; resolves when it is over. */
export async function stdioTunnel(stdin: Readable, stdout: Writable, options: TcpOptions): Promise<void> {
  stdin.pause()
  const tunnel = await openTunnel('tcp', options.context, options.host, options.port)
  // A process cannot half-close its stdout (pipe() never ends process.stdout, and its end() leaves
  // fd 1 open), so the program at the other end of the pipe (ssh) would never see the server's
  // FIN and would wait forever, e.g. for a tunnel the server ended on sign-out. Once the server
  // has finished sending and stdout has taken every byte, the stdio tunnel is over: the command
  // returns and the process exits, which closes its stdout.
  const downstreamDone = new Promise<void>((resolve) => tunnel.once('end', () => stdout.write('', () => resolve())))
  await Promise.race([splice(stdin, stdout, tunnel), downstreamDone])
  tunnel.destroy()
}
