/**
 * HAProxy PROXY protocol v1 and v2 (`use_proxy_protocol`): a load balancer in front of us
 * prepends the real client address to each TCP connection. When the setting is on, a connection
 * without a valid header is closed; the header is never passed to HTTP parsing.
 */
import type { Socket } from 'node:net'

export interface ProxiedAddress {
  /** Client address, or undefined for LOCAL/UNKNOWN connections (health checks of the balancer). */
  readonly address: string | undefined
  readonly port: number | undefined
}

export type ParseResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'ok'; readonly proxied: ProxiedAddress; readonly consumed: number }

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_MAX = 107
/** Upper bound on a v2 header we accept (addresses plus TLVs); more is treated as an attack. */
const V2_MAX = 16 + 2048

export function parseProxyHeader(buf: Buffer): ParseResult {
  if (buf.length >= 1 && buf[0] === 0x50 /* P */) return parseV1(buf)
  if (buf.length >= 1 && buf[0] === 0x0d) return parseV2(buf)
  return { kind: 'invalid', reason: 'no PROXY protocol header' }
}

function parseV1(buf: Buffer): ParseResult {
  const end = buf.indexOf('\r\n')
  if (end === -1) return buf.length > V1_MAX ? { kind: 'invalid', reason: 'PROXY v1 header too long' } : { kind: 'incomplete' }
  const line = buf.subarray(0, end).toString('latin1')
  const parts = line.split(' ')
  if (parts[0] !== 'PROXY') return { kind: 'invalid', reason: 'bad PROXY v1 header' }
  if (parts[1] === 'UNKNOWN') return { kind: 'ok', proxied: { address: undefined, port: undefined }, consumed: end + 2 }
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) return { kind: 'invalid', reason: 'bad PROXY v1 header' }
  const address = parts[2] as string
  const port = Number(parts[4])
  const valid = parts[1] === 'TCP4' ? /^\d{1,3}(\.\d{1,3}){3}$/.test(address) : /^[0-9a-fA-F:.]+$/.test(address)
  if (!valid || !Number.isInteger(port) || port < 0 || port > 65535) return { kind: 'invalid', reason: 'bad PROXY v1 address' }
  return { kind: 'ok', proxied: { address, port }, consumed: end + 2 }
}

function parseV2(buf: Buffer): ParseResult {
  if (buf.length < 16) {
    return V2_SIGNATURE.subarray(0, buf.length).equals(buf) ? { kind: 'incomplete' } : { kind: 'invalid', reason: 'bad PROXY v2 signature' }
  }
  if (!buf.subarray(0, 12).equals(V2_SIGNATURE)) return { kind: 'invalid', reason: 'bad PROXY v2 signature' }
  const verCmd = buf[12] as number
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: 'unsupported PROXY protocol version' }
  const length = buf.readUInt16BE(14)
  if (16 + length > V2_MAX) return { kind: 'invalid', reason: 'PROXY v2 header too long' }
  if (buf.length < 16 + length) return { kind: 'incomplete' }
  const consumed = 16 + length
  const command = verCmd & 0x0f
  if (command === 0) return { kind: 'ok', proxied: { address: undefined, port: undefined }, consumed }
  if (command !== 1) return { kind: 'invalid', reason: 'unknown PROXY v2 command' }
  const family = (buf[13] as number) >> 4
  const body = buf.subarray(16, consumed)
  if (family === 1 && body.length >= 12) {
    const address = `${body[0]}.${body[1]}.${body[2]}.${body[3]}`
    return { kind: 'ok', proxied: { address, port: body.readUInt16BE(8) }, consumed }
  }
  if (family === 2 && body.length >= 36) {
    const groups: string[] = []
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16))
    return { kind: 'ok', proxied: { address: groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::'), port: body.readUInt16BE(32) }, consumed }
  }
  // AF_UNSPEC or AF_UNIX: no usable client address.
  return { kind: 'ok', proxied: { address: undefined, port: undefined }, consumed }
}

/**
 * Reads the PROXY header from a fresh connection, then hands the socket and the bytes read past
 * the header (`rest`, possibly empty) to `next`. Invalid or slow headers close the connection.
 *
 * The socket is neither paused nor are the bytes pushed back onto it: a pause now followed by a
 * resume later leaves a 'resume' event pending, and Node's HTTP/1.1 server restarts reading when it
 * fires even if it has paused the socket since, which breaks request-body backpressure (see
 * routeCleartext in front.ts).
 */
export function acceptProxyProtocol(socket: Socket, timeoutMs: number, next: (proxied: ProxiedAddress, rest: Buffer) => void): void {
  let buffered: Buffer = Buffer.alloc(0)
  const timer = setTimeout(() => socket.destroy(), timeoutMs)
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    const result = parseProxyHeader(buffered)
    if (result.kind === 'incomplete') return
    socket.off('data', onData)
    clearTimeout(timer)
    if (result.kind === 'invalid') {
      socket.destroy()
      return
    }
    next(result.proxied, buffered.subarray(result.consumed))
  }
  socket.on('data', onData)
  socket.once('close', () => clearTimeout(timer))
}
