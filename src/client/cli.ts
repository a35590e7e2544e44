/**
 * The client commands, with pomerium-cli's flags (Pomerium docs: Pomerium CLI; TCP over HTTP
 * Support; Kubernetes Access):
 *   portcullis tcp HOST:PORT [--listen ADDR|-] [--pomerium-url URL] [--browser-cmd CMD]
 *                  [--disable-tls-verification] [--alternate-ca-path FILE] [--client-cert FILE --client-key FILE]
 *   portcullis udp HOST:PORT [the same flags]
 *   portcullis logout [--pomerium-url URL]
 *   portcullis routes list [--pomerium-url URL] [--json] [TLS and browser flags]
 *   portcullis k8s exec-credential SERVER-URL [TLS and browser flags]
 * Everything a test needs is injectable: the streams, the environment (XDG_CACHE_HOME), and the
 * "browser" (a function that is handed the sign-in URL).
 */
import { homedir } from 'node:os'
import type { Readable, Writable } from 'node:stream'
import { defaultJwtCacheDir, JwtCache } from './jwt-cache.js'
import { get, proxyEndpoint, splitHostPort, type ProxyEndpoint } from './proxy.js'
import { SignIn, type OpenBrowser } from './sign-in.js'
import { listenTcp, stdioTunnel, type TcpListener } from './tcp.js'
import type { TunnelContext } from './tunnel.js'
import { listenUdp, type UdpListener } from './udp.js'
import { CodedError } from '../shared/errors.js'

export interface ClientIo {
  readonly stdin: Readable
  readonly stdout: Writable
  readonly stderr: Writable
  readonly env: Readonly<Record<string, string | undefined>>
  readonly home: string
  /** Tests: opens the sign-in URL in-process instead of `--browser-cmd` or xdg-open. */
  readonly browser?: OpenBrowser
  readonly signInTimeoutMs?: number
  /** Tests: how long a UDP tunnel lives before it is renewed. */
  readonly udpLifetimeMs?: number
  /** A long-running command (a listener) stops when this aborts; main.ts wires SIGINT/SIGTERM. */
  readonly signal?: AbortSignal
}

export function processIo(signal?: AbortSignal): ClientIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, home: homedir(), ...(signal ? { signal } : {}) }
}

export interface ClientFlags {
  readonly positional: readonly string[]
  readonly listen?: string
  readonly pomeriumUrl?: string
  readonly browserCmd?: string
  readonly disableTlsVerification: boolean
  readonly alternateCaPath?: string
  readonly clientCert?: string
  readonly clientKey?: string
  readonly json: boolean
  readonly help: boolean
}

const VALUE_FLAGS = new Map<string, keyof ClientFlags>([
  ['listen', 'listen'],
  ['pomerium-url', 'pomeriumUrl'],
  ['browser-cmd', 'browserCmd'],
  ['alternate-ca-path', 'alternateCaPath'],
  ['client-cert', 'clientCert'],
  ['client-key', 'clientKey'],
])

/** Parses `--flag value`, `--flag=value` (and Go's single dash), booleans as `--flag` or `--flag=true|false`. */
export function parseClientFlags(argv: readonly string[], allowed: readonly string[]): { flags: ClientFlags; errors: string[] } {
  const errors: string[] = []
  const positional: string[] = []
  const values: Record<string, string> = {}
  let disableTlsVerification = false
  let json = false
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '-' || !arg.startsWith('-')) {
      positional.push(arg)
      continue
    }
    if (arg === '--') {
      positional.push(...argv.slice(i + 1))
      break
    }
    const m = /^--?([a-z-]+)(?:=(.*))?$/s.exec(arg)
    const name = m?.[1] ?? ''
    if (name === 'help' || name === 'h') {
      help = true
      continue
    }
    if (!m || !allowed.includes(name)) {
      errors.push(`unknown flag ${JSON.stringify(arg)}`)
      continue
    }
    const inline = m[2]
    if (name === 'disable-tls-verification' || name === 'json') {
      const on = inline === undefined || inline === 'true' ? true : inline === 'false' ? false : undefined
      if (on === undefined) errors.push(`${arg}: true or false`)
      else if (name === 'json') json = on
      else disableTlsVerification = on
      continue
    }
    const value = inline ?? argv[++i]
    if (value === undefined || value === '') {
      errors.push(`--${name} needs a value`)
      continue
    }
    values[VALUE_FLAGS.get(name) as string] = value
  }
  return { flags: { positional, ...values, disableTlsVerification, json, help }, errors }
}

const TLS_FLAGS = ['pomerium-url', 'browser-cmd', 'disable-tls-verification', 'alternate-ca-path', 'client-cert', 'client-key']

export const CLIENT_HELP = {
  tcp: `Usage: portcullis tcp HOST:PORT [--listen ADDR | --listen -] [--pomerium-url URL] [flags]

Opens a TCP tunnel to the route tcp+https://HOST:PORT through Portcullis (or Pomerium): every
connection to the local address becomes one HTTP CONNECT tunnel. Without --listen it listens
on a free port of 127.0.0.1 and prints "listening on 127.0.0.1:PORT" on stderr; --listen -
relays stdin/stdout instead (ssh -o ProxyCommand='portcullis tcp --listen - %h:%p' HOST).
When the server asks for a sign-in, a browser is opened on the sign-in page (the URL is printed
too) and the token is cached for the server (portcullis logout forgets it).

Flags:
  --listen ADDR                 local address, host:port or :port (loopback); - for stdin/stdout
  --pomerium-url URL            the server to dial (default https://HOST:443); http:// = cleartext
  --browser-cmd CMD             run CMD URL to open the sign-in page (default xdg-open / open)
  --disable-tls-verification    do not verify the server's certificate
  --alternate-ca-path FILE      trust this CA (PEM) too
  --client-cert FILE --client-key FILE   present a client certificate (mTLS)`,
  udp: `Usage: portcullis udp HOST:PORT [--listen ADDR] [--pomerium-url URL] [flags]

Opens a UDP tunnel to the route udp+https://HOST:PORT (CONNECT-UDP, RFC 9298): datagrams sent
to the local address (default a free port of 127.0.0.1, printed on stderr) go through one
tunnel, opened on the first datagram and renewed every 10 minutes; replies go to the local peer
that last sent one. The flags are those of portcullis tcp (--listen - is not available).`,
  logout: `Usage: portcullis logout [--pomerium-url URL]

Forgets the cached sign-in tokens: all of them, or only that server's.`,
  routes: `Usage: portcullis routes list [--pomerium-url URL] [--json] [flags]

Lists the routes the signed-in user may open (the server's /.pomerium/api/v1/routes): name,
type, from and, for tcp and udp routes, the command that opens a tunnel. --json prints the
server's JSON. Signs in first when needed. TLS and browser flags as for portcullis tcp.`,
  k8s: `Usage: portcullis k8s exec-credential SERVER-URL [flags]

A kubectl credential plugin: prints a client.authentication.k8s.io ExecCredential whose token
is Pomerium-<jwt> for SERVER-URL (the Kubernetes API route), signing in when needed. In a
kubeconfig user:  exec: { apiVersion: client.authentication.k8s.io/v1, command: portcullis,
args: [k8s, exec-credential, https://k8s.example.com] }.  TLS and browser flags as for tcp.`,
}

/** A mistake in the command line: exit code 2 and the command's help. */
class UsageError extends CodedError {
  readonly code = 'ERR_USAGE'
}

interface Context {
  readonly io: ClientIo
  readonly cache: JwtCache
  readonly say: (line: string) => void
}

function contextOf(io: ClientIo): Context {
  const cache = new JwtCache(defaultJwtCacheDir(io.env, io.home))
  return { io, cache, say: (line) => io.stderr.write(`${line}\n`) }
}

function signInOf(ctx: Context, flags: ClientFlags): SignIn {
  const browser = ctx.io.browser ?? flags.browserCmd
  return new SignIn({ cache: ctx.cache, say: ctx.say, ...(browser !== undefined ? { browser } : {}), ...(ctx.io.signInTimeoutMs !== undefined ? { timeoutMs: ctx.io.signInTimeoutMs } : {}) })
}

function tlsFlags(flags: ClientFlags): Parameters<typeof proxyEndpoint>[2] {
  return {
    disableTlsVerification: flags.disableTlsVerification,
    ...(flags.alternateCaPath !== undefined ? { alternateCaPath: flags.alternateCaPath } : {}),
    ...(flags.clientCert !== undefined ? { clientCert: flags.clientCert } : {}),
    ...(flags.clientKey !== undefined ? { clientKey: flags.clientKey } : {}),
  }
}

/** `--listen`: `host:port`, `:port` (loopback: a tunnel is never offered to the network unasked), or `-`. */
export function listenAddress(value: string | undefined): { host: string; port: number } | 'stdio' {
  if (value === undefined) return { host: '127.0.0.1', port: 0 }
  if (value === '-') return 'stdio'
  if (/^:?\d{1,5}$/.test(value)) return splitHostPort(`127.0.0.1:${value.replace(/^:/, '')}`, true)
  return splitHostPort(value, true)
}

/** The parts of a tunnel command, checked: destination, listen address, server, sign-in. */
function tunnelSetup(kind: 'tcp' | 'udp', flags: ClientFlags, ctx: Context): { host: string; port: number; listen: ReturnType<typeof listenAddress>; context: TunnelContext } {
  if (flags.positional.length !== 1) throw new UsageError(`portcullis ${kind} takes one HOST:PORT`)
  const { host, port } = splitHostPort(flags.positional[0] as string)
  const listen = listenAddress(flags.listen)
  if (listen === 'stdio' && kind === 'udp') throw new UsageError('portcullis udp cannot --listen - (datagrams need a socket)')
  const endpoint = proxyEndpoint(flags.pomeriumUrl, host, tlsFlags(flags))
  return { host, port, listen, context: { endpoint, cache: ctx.cache, signIn: signInOf(ctx, flags) } }
}

/**
 * Starts a tunnel listener in-process (tests and main.ts): resolves with its address once it
 * listens. `argv` is what follows `portcullis tcp|udp`.
 */
export async function startTunnelClient(kind: 'tcp' | 'udp', argv: readonly string[], io: ClientIo): Promise<TcpListener | UdpListener> {
  const { flags, errors } = parseClientFlags(argv, ['listen', ...TLS_FLAGS])
  if (errors.length > 0) throw new UsageError(errors.join('; '))
  const ctx = contextOf(io)
  const setup = tunnelSetup(kind, flags, ctx)
  if (setup.listen === 'stdio') throw new UsageError('startTunnelClient does not run --listen -')
  const options = { context: setup.context, host: setup.host, port: setup.port, say: ctx.say }
  const listener = kind === 'tcp' ? await listenTcp(setup.listen.host, setup.listen.port, options) : await listenUdp(setup.listen.host, setup.listen.port, { ...options, ...(io.udpLifetimeMs !== undefined ? { lifetimeMs: io.udpLifetimeMs } : {}) })
  ctx.say(`listening on ${listener.address}`)
  return listener
}

function waitForAbort(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal === undefined) return // runs until the process is stopped
    if (signal.aborted) return resolve()
    signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

async function tunnelCommand(kind: 'tcp' | 'udp', argv: readonly string[], io: ClientIo): Promise<number> {
  const { flags, errors } = parseClientFlags(argv, ['listen', ...TLS_FLAGS])
  if (flags.help) return help(io, kind)
  if (errors.length > 0) throw new UsageError(errors.join('; '))
  const ctx = contextOf(io)
  if (kind === 'tcp' && listenAddress(flags.listen) === 'stdio') {
    const setup = tunnelSetup(kind, flags, ctx)
    await stdioTunnel(io.stdin, io.stdout, { context: setup.context, host: setup.host, port: setup.port, say: ctx.say })
    return 0
  }
  const listener = await startTunnelClient(kind, argv, io)
  await waitForAbort(io.signal)
  await listener.close()
  return 0
}

function help(io: ClientIo, command: keyof typeof CLIENT_HELP): number {
  io.stdout.write(`${CLIENT_HELP[command]}\n`)
  return 0
}

function logout(argv: readonly string[], io: ClientIo): number {
  const { flags, errors } = parseClientFlags(argv, ['pomerium-url'])
  if (flags.help) return help(io, 'logout')
  if (errors.length > 0 || flags.positional.length > 0) throw new UsageError([...errors, ...flags.positional.map((p) => `unexpected argument ${JSON.stringify(p)}`)].join('; '))
  const ctx = contextOf(io)
  if (flags.pomeriumUrl !== undefined) {
    const endpoint = proxyEndpoint(flags.pomeriumUrl, undefined, {})
    const had = ctx.cache.get(endpoint.cacheKey) !== undefined
    ctx.cache.delete(endpoint.cacheKey)
    ctx.say(had ? `signed out of ${endpoint.origin}` : `no sign-in cached for ${endpoint.origin}`)
  } else {
    const n = ctx.cache.clear()
    ctx.say(`removed ${n} cached sign-in${n === 1 ? '' : 's'}`)
  }
  return 0
}

/** A GET with the cached token, signing in on a 3xx or 401 and retrying once. */
async function authorizedGet(endpoint: ProxyEndpoint, path: string, ctx: Context, signIn: SignIn): Promise<{ status: number; body: string }> {
  for (let round = 0; ; round++) {
    const token = ctx.cache.get(endpoint.cacheKey)
    const res = await get(endpoint, path, token !== undefined ? { authorization: `Pomerium ${token}`, accept: 'application/json' } : { accept: 'application/json' })
    const needsSignIn = (res.status >= 300 && res.status < 400) || res.status === 401
    if (!needsSignIn) {
      if (res.status === 403) ctx.cache.delete(endpoint.cacheKey)
      return res
    }
    if (round >= 1) {
      ctx.cache.delete(endpoint.cacheKey)
      return res
    }
    await signIn.signIn(endpoint)
  }
}

interface RouteJson {
  readonly name?: unknown
  readonly type?: unknown
  readonly from?: unknown
  readonly connect_command?: unknown
}

/** The rows `routes list` prints, from the body of /.pomerium/api/v1/routes. */
export function routeRows(body: string): string[][] {
  const parsed = JSON.parse(body) as { routes?: unknown }
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(parsed.routes)) throw new Error('the routes API did not answer {"routes": [...]}')
  const text = (v: unknown): string => (typeof v === 'string' ? v : '')
  return (parsed.routes as RouteJson[]).map((r) => [text(r.name), text(r.type), text(r.from), text(r.connect_command)])
}

/** Left-aligned columns separated by two spaces. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n')
}

async function routes(argv: readonly string[], io: ClientIo): Promise<number> {
  const { flags, errors } = parseClientFlags(argv, ['json', ...TLS_FLAGS])
  if (flags.help) return help(io, 'routes')
  if (flags.positional[0] !== 'list' || flags.positional.length !== 1) throw new UsageError('usage: portcullis routes list [--pomerium-url URL] [--json]')
  if (errors.length > 0) throw new UsageError(errors.join('; '))
  const ctx = contextOf(io)
  const endpoint = proxyEndpoint(flags.pomeriumUrl, undefined, tlsFlags(flags))
  const res = await authorizedGet(endpoint, '/.pomerium/api/v1/routes', ctx, signInOf(ctx, flags))
  if (res.status !== 200) {
    ctx.say(`portcullis: ${endpoint.origin}/.pomerium/api/v1/routes answered ${res.status}${res.body.trim() !== '' ? `: ${res.body.trim().split('\n')[0]?.slice(0, 200)}` : ''}`)
    return 1
  }
  const rows = routeRows(res.body)
  if (flags.json) io.stdout.write(`${JSON.stringify(JSON.parse(res.body), null, 2)}\n`)
  else io.stdout.write(`${table(['NAME', 'TYPE', 'FROM', 'CONNECT'], rows)}\n`)
  return 0
}

/** The `exp` of a compact JWT as seconds since the epoch (undefined when absent or unreadable). */
export function jwtExpiry(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown }
    return typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp : undefined
  } catch {
    return undefined
  }
}

const EXEC_CREDENTIAL_GROUP = 'client.authentication.k8s.io'

/**
 * The ExecCredential kubectl reads (Kubernetes: client-go credential plugins). Its apiVersion is
 * the one kubectl asked for in KUBERNETES_EXEC_INFO (v1 or v1beta1, whichever the kubeconfig's
 * exec section names), else v1.
 */
export function execCredential(token: string, env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  let apiVersion = `${EXEC_CREDENTIAL_GROUP}/v1`
  try {
    const info = JSON.parse(env['KUBERNETES_EXEC_INFO'] ?? '') as { apiVersion?: unknown }
    if (typeof info.apiVersion === 'string' && info.apiVersion.startsWith(`${EXEC_CREDENTIAL_GROUP}/`)) apiVersion = info.apiVersion
  } catch {
    // not set or not JSON: the default
  }
  const exp = jwtExpiry(token)
  return {
    apiVersion,
    kind: 'ExecCredential',
    status: {
      ...(exp !== undefined ? { expirationTimestamp: new Date(exp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') } : {}),
      token: `Pomerium-${token}`,
    },
  }
}

async function k8s(argv: readonly string[], io: ClientIo): Promise<number> {
  const { flags, errors } = parseClientFlags(argv, TLS_FLAGS.filter((f) => f !== 'pomerium-url'))
  if (flags.help) return help(io, 'k8s')
  if (flags.positional[0] !== 'exec-credential' || flags.positional.length !== 2) throw new UsageError('usage: portcullis k8s exec-credential SERVER-URL')
  if (errors.length > 0) throw new UsageError(errors.join('; '))
  const ctx = contextOf(io)
  const server = new URL(flags.positional[1] as string)
  const endpoint = proxyEndpoint(server.origin, undefined, tlsFlags(flags))
  const token = ctx.cache.get(endpoint.cacheKey) ?? (await signInOf(ctx, flags).signIn(endpoint))
  io.stdout.write(`${JSON.stringify(execCredential(token, io.env))}\n`)
  return 0
}

export const CLIENT_COMMANDS = ['tcp', 'udp', 'logout', 'routes', 'k8s'] as const
export type ClientCommand = (typeof CLIENT_COMMANDS)[number]

export function isClientCommand(word: string | undefined): word is ClientCommand {
  return (CLIENT_COMMANDS as readonly string[]).includes(word ?? '')
}

/** Runs one client command; the exit code (2 for usage errors, 1 for failures). */
export async function clientCommand(command: ClientCommand, argv: readonly string[], io: ClientIo): Promise<number> {
  try {
    switch (command) {
      case 'tcp':
      case 'udp':
        return await tunnelCommand(command, argv, io)
      case 'logout':
        return logout(argv, io)
      case 'routes':
        return await routes(argv, io)
      case 'k8s':
        return await k8s(argv, io)
    }
  } catch (err) {
    io.stderr.write(`portcullis: ${(err as Error).message}\n`)
    if (err instanceof UsageError) {
      io.stderr.write(`${CLIENT_HELP[command]}\n`)
      return 2
    }
    return 1
  }
}
