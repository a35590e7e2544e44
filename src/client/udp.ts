/**
 * `portcullis udp host:port`: a local UDP socket whose datagrams travel through one CONNECT-UDP
 * tunnel (RFC 9298; Pomerium docs: UDP over HTTP). The tunnel opens on the first datagram, is
 * re-opened by the next datagram after it closes, and is renewed every 10 minutes as
 * pomerium-cli does, so a long-lived listener does not outlive its authorization. Replies go to
 * the local peer that last sent a datagram (the relay's rule).
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram'
import { isIP } from 'node:net'
import { relayDatagrams } from './udp-relay.js'
import { openTunnel, type TunnelContext } from './tunnel.js'

/** pomerium-cli re-establishes a UDP tunnel this often. */
export const UDP_TUNNEL_LIFETIME_MS = 10 * 60_000
/** Datagrams held while the tunnel is being opened (sign-in may take minutes); more are dropped. */
const MAX_PENDING = 256

export interface UdpOptions {
  readonly context: TunnelContext
  readonly host: string
  readonly port: number
  readonly say: (line: string) => void
  /** Tests shorten the renewal. */
  readonly lifetimeMs?: number
}

export interface UdpListener {
  readonly address: string
  readonly port: number
  /** How many tunnels have been opened so far (tests wait on it). */
  readonly tunnels: () => number
  close(): Promise<void>
}

export function listenUdp(listenHost: string, listenPort: number, options: UdpOptions): Promise<UdpListener> {
  const socket: UdpSocket = createSocket(isIP(listenHost) === 6 ? 'udp6' : 'udp4')
  let relay: { close(): void; closed: Promise<string> } | undefined
  let opening = false
  let closing = false
  let opened = 0
  let pending: [Buffer, RemoteInfo][] = []
  let renewTimer: NodeJS.Timeout | undefined

  const open = async (): Promise<void> => {
    opening = true
    try {
      const tunnel = await openTunnel('udp', options.context, options.host, options.port)
      if (closing) {
        tunnel.destroy()
        return
      }
      const current = relayDatagrams(tunnel, socket)
      // openTunnel leaves the socket paused (its first bytes buffered): a relay that reads with
      // 'data' listeners needs it flowing; one that reads with 'readable' or pipe is unaffected.
      tunnel.resume()
      relay = current
      opened++
      renewTimer = setTimeout(() => current.close(), options.lifetimeMs ?? UDP_TUNNEL_LIFETIME_MS)
      renewTimer.unref()
      void current.closed.then((why) => {
        clearTimeout(renewTimer)
        if (relay === current) relay = undefined
        // The 10-minute renewal closes it on purpose ('closed'): not worth a line.
        if (!closing && why !== '' && why !== 'closed') options.say(`portcullis: udp tunnel closed: ${why}`)
      })
      // The datagrams that arrived while opening: handed to the relay as if they arrived now.
      const held = pending
      pending = []
      for (const [msg, rinfo] of held) socket.emit('message', msg, rinfo)
    } catch (err) {
      pending = []
      options.say(`portcullis: ${(err as Error).message}`)
    } finally {
      opening = false
    }
  }

  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    if (relay !== undefined || closing) return
    if (pending.length < MAX_PENDING) pending.push([msg, rinfo])
    if (!opening) void open()
  })
  socket.on('error', (err) => options.say(`portcullis: udp: ${err.message}`))

  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(listenPort, listenHost, () => {
      socket.off('error', reject)
      const addr = socket.address()
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
      resolve({
        address: `${host}:${addr.port}`,
        port: addr.port,
        tunnels: () => opened,
        close: () =>
          new Promise<void>((done) => {
            closing = true
            clearTimeout(renewTimer)
            relay?.close()
            socket.close(() => done())
          }),
      })
    })
  })
}
