/**
 * Which Portcullis (or Pomerium) server the client talks to, and how: `--pomerium-url` when given
 * (`http://` cleartext, `https://` TLS), else `https://<destination host>:443`, as pomerium-cli
 * does (Pomerium docs: TCP over HTTP Support, "Two ports, one transport"). TLS is verified
 * unless `--disable-tls-verification`; `--alternate-ca-path` adds a CA to the system ones;
 * `--client-cert`/`--client-key` present a client certificate (mTLS).
 */
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { readFileSync } from 'node:fs'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect, rootCertificates, type ConnectionOptions } from 'node:tls'
import { jwtCacheKey } from './jwt-cache.js'

export interface TlsFlags {
  readonly disableTlsVerification?: boolean
  readonly alternateCaPath?: string
  readonly clientCert?: string
  readonly clientKey?: string
}

export interface ProxyEndpoint {
  readonly tls: boolean
  /** Host name or IP address, IPv6 without brackets. */
  readonly host: string
  readonly port: number
  /** `host:port` as in a Host header (IPv6 bracketed). */
  readonly authority: string
  /** `http(s)://authority`. */
  readonly origin: string
  /** The JWT cache key of this server. */
  readonly cacheKey: string
  /** TLS options for every connection to it (undefined for cleartext). */
  readonly tlsOptions: ConnectionOptions | undefined
}

/** Splits `host:port` (IPv6 as `[::1]:port`); throws on anything else. Port 0 only when `anyPort` (a listen address). */
export function splitHostPort(value: string, anyPort = false): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s/]+)):(\d{1,5})$/.exec(value)
  const port = Number(m?.[3])
  if (!m || !(port >= (anyPort ? 0 : 1) && port <= 65535)) throw new Error(`${JSON.stringify(value)} is not host:port`)
  return { host: (m[1] ?? m[2]) as string, port }
}

function bracket(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host
}

/** The TLS options the flags ask for (files are read once, here). */
function tlsOptionsOf(flags: TlsFlags, servername: string): ConnectionOptions {
  const options: ConnectionOptions = { rejectUnauthorized: flags.disableTlsVerification !== true, ALPNProtocols: ['http/1.1'] }
  // SNI carries names only (RFC 6066 section 3).
  if (isIP(servername) === 0) options.servername = servername
  if (flags.alternateCaPath !== undefined) options.ca = [...rootCertificates, readFileSync(flags.alternateCaPath, 'utf8')]
  if ((flags.clientCert === undefined) !== (flags.clientKey === undefined)) throw new Error('--client-cert and --client-key go together')
  if (flags.clientCert !== undefined && flags.clientKey !== undefined) {
    options.cert = readFileSync(flags.clientCert, 'utf8')
    options.key = readFileSync(flags.clientKey, 'utf8')
  }
  return options
}

/** The server to dial: `pomeriumUrl`, else `https://<destinationHost>:443`. */
export function proxyEndpoint(pomeriumUrl: string | undefined, destinationHost: string | undefined, flags: TlsFlags): ProxyEndpoint {
  let url: URL
  if (pomeriumUrl !== undefined) {
    try {
      url = new URL(pomeriumUrl)
    } catch {
      throw new Error(`--pomerium-url ${JSON.stringify(pomeriumUrl)} is not a URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`--pomerium-url must be http:// or https://, not ${url.protocol}//`)
  } else if (destinationHost !== undefined) {
    url = new URL(`https://${bracket(destinationHost)}:443`)
  } else {
    throw new Error('no server: pass --pomerium-url https://proxy.example.com')
  }
  const tls = url.protocol === 'https:'
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port)
  const authority = `${bracket(host)}:${port}`
  return {
    tls,
    host,
    port,
    authority,
    origin: `${tls ? 'https' : 'http'}://${authority}`,
    cacheKey: jwtCacheKey(authority, tls),
    tlsOptions: tls ? tlsOptionsOf(flags, host) : undefined,
  }
}

/** Opens a connection to the server (TLS when it is https), resolving once it is ready to write. */
export function dial(endpoint: ProxyEndpoint, timeoutMs = 30_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: a tunnel's half-close passes through. TLS takes it from the socket it wraps.
    const tcp = netConnect({ host: endpoint.host, port: endpoint.port, allowHalfOpen: true })
    // `host`: the name the certificate is checked against; over a given socket Node would check
    // "localhost" instead, and a server dialled by address (https://127.0.0.1:PORT) would fail.
    const socket: Socket = endpoint.tlsOptions ? tlsConnect({ ...endpoint.tlsOptions, host: endpoint.host, socket: tcp }) : tcp
    const timer = setTimeout(() => {
      const err = new Error(`connecting to ${endpoint.origin} timed out`)
      socket.destroy(err)
      tcp.destroy(err)
    }, timeoutMs)
    const onError = (err: Error): void => {
      clearTimeout(timer)
      socket.destroy()
      tcp.destroy()
      reject(new Error(`cannot reach ${endpoint.origin}: ${err.message}`))
    }
    socket.once('error', onError)
    if (socket !== tcp) tcp.once('error', onError)
    socket.once(endpoint.tlsOptions ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      tcp.off('error', onError)
      // Under TLS the TLS socket reports the failure (it closes with its transport).
      if (socket !== tcp) tcp.on('error', () => undefined)
      socket.setNoDelay(true)
      resolve(socket)
    })
  })
}

export interface SimpleResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: string
}

/** A GET to the server (login and routes API), with the same TLS options; bodies are capped at 1 MiB. */
export function get(endpoint: ProxyEndpoint, pathAndQuery: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const options = { host: endpoint.host, port: endpoint.port, path: pathAndQuery, method: 'GET', headers: { host: endpoint.authority, ...headers }, agent: false as const, timeout: timeoutMs }
    const req = endpoint.tlsOptions ? httpsRequest({ ...endpoint.tlsOptions, ...options }) : httpRequest(options)
    req.on('timeout', () => req.destroy(new Error(`GET ${endpoint.origin}${pathAndQuery.split('?')[0] ?? ''} timed out`)))
    req.on('error', (err) => reject(new Error(`cannot reach ${endpoint.origin}: ${err.message}`)))
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > 1024 * 1024) req.destroy(new Error('response body over 1 MiB'))
        else chunks.push(c)
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.end()
  })
}
