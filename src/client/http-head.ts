/**
 * Reading an HTTP/1.1 response head off a raw socket, for the tunnel client's CONNECT and
 * CONNECT-UDP requests (docs/tunnels.md; RFC 9110 section 9.3.6, RFC 9298). node:http is not used
 * for these: every byte after the head of a 200 (CONNECT) or 101 (CONNECT-UDP) answer belongs to
 * the tunnel, so the client parses the head itself and hands the rest back to the stream.
 */
import type { Duplex } from 'node:stream'

/** The longest response head accepted: a proxy answer is a few hundred bytes. */
export const MAX_HEAD_BYTES = 16 * 1024

export interface ResponseHead {
  readonly status: number
  readonly reason: string
  /** Header names lower-cased; a repeated header's values joined with ", ". */
  readonly headers: ReadonlyMap<string, string>
}

/** Parses the text of a head (without the final blank line); throws on a malformed status line. */
export function parseHead(text: string): ResponseHead {
  const lines = text.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '')
  if (!m) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)
  const headers = new Map<string, string>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0) throw new Error(`malformed response header line: ${JSON.stringify(line.slice(0, 80))}`)
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    const prior = headers.get(name)
    headers.set(name, prior === undefined ? value : `${prior}, ${value}`)
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers }
}

/**
 * Reads one response head from `socket`. Whatever arrived after the head is pushed back into the
 * socket (`unshift`), so the next reader, a pipe or the datagram relay, sees the tunnel's first
 * bytes in order. The socket is left paused.
 */
export function readHead(socket: Duplex, maxBytes = MAX_HEAD_BYTES): Promise<ResponseHead> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0)
    const done = (): void => {
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', onError)
      socket.off('close', onEnd)
    }
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end < 0) {
        if (buffered.length > maxBytes) {
          done()
          reject(new Error(`the proxy's response head is over ${maxBytes} bytes`))
        }
        return
      }
      done()
      socket.pause()
      const rest = buffered.subarray(end + 4)
      if (rest.length > 0) socket.unshift(rest)
      try {
        resolve(parseHead(buffered.subarray(0, end).toString('latin1')))
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    }
    const onEnd = (): void => {
      done()
      reject(new Error('the proxy closed the connection before answering'))
    }
    const onError = (err: Error): void => {
      done()
      reject(err)
    }
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
    socket.on('error', onError)
  })
}

/**
 * The first line of an error answer's body, for the message the user sees: reads up to
 * `content-length` (or until the proxy closes), at most `maxBytes`, for at most `timeoutMs`.
 */
export function readBodyFirstLine(socket: Duplex, head: ResponseHead, maxBytes = 4096, timeoutMs = 2000): Promise<string> {
  const declared = Number(head.headers.get('content-length') ?? Number.NaN)
  const want = Number.isFinite(declared) ? Math.min(declared, maxBytes) : maxBytes
  return new Promise((resolve) => {
    let body: Buffer = Buffer.alloc(0)
    const finish = (): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', finish)
      socket.off('close', finish)
      socket.off('error', finish)
      const text = body.subarray(0, want).toString('utf8')
      resolve((text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '').trim())
    }
    const onData = (chunk: Buffer): void => {
      body = Buffer.concat([body, chunk])
      if (body.length >= want) finish()
    }
    const timer = setTimeout(finish, timeoutMs)
    if (want === 0) return finish()
    socket.on('data', onData)
    socket.on('end', finish)
    socket.on('close', finish)
    socket.on('error', finish)
    socket.resume()
  })
}
