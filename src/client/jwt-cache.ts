/**
 * The `portcullis tcp|udp` client's cache of Pomerium JWTs (issue 13; docs/tunnels.md once the
 * tunnels land): one token per server, as `pomerium-cli` keys it — `<proxy host:port>|<tls>` —
 * so that one sign-in serves every TCP/UDP route of that server. Tokens live in the user's cache
 * directory (`$XDG_CACHE_HOME/portcullis/jwt`, else `~/.cache/portcullis/jwt`), the directory
 * mode 0700 and each file 0600, written atomically. A token past its `exp` is never returned (and
 * is removed); `portcullis logout` clears them all.
 *
 * The client cannot verify the token (the server does); `exp` is read only to avoid a round trip
 * that would certainly be refused.
 */
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** Where the cache lives: `$XDG_CACHE_HOME/portcullis/jwt`, else `<home>/.cache/portcullis/jwt`. */
export function defaultJwtCacheDir(env: Readonly<Record<string, string | undefined>>, home: string): string {
  const xdg = env['XDG_CACHE_HOME']
  // The XDG base directory spec: a relative path is invalid and must be ignored.
  const base = xdg !== undefined && xdg.startsWith('/') ? xdg : join(home, '.cache')
  return join(base, 'portcullis', 'jwt')
}

/** The cache key of a server, as `pomerium-cli` forms it: one token per proxy address and TLS use. */
export function jwtCacheKey(proxyHostPort: string, tls: boolean): string {
  return `${proxyHostPort.toLowerCase()}|${tls}`
}

/** Seconds-since-epoch `exp` of a compact JWT, undefined when it has none; throws when it is not a JWT. */
function expiryOf(token: string): number | undefined {
  const parts = token.split('.')
  if (parts.length !== 3 || parts.some((p) => p === '' || !/^[A-Za-z0-9_-]+$/.test(p))) throw new TypeError('not a compact JWT')
  const payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as unknown
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new TypeError('JWT payload is not an object')
  const exp = (payload as Record<string, unknown>)['exp']
  if (exp === undefined) return undefined
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new TypeError('JWT exp is not a number')
  return exp
}

export class JwtCache {
  readonly #dir: string
  readonly #now: () => number

  /** `now`: epoch milliseconds (tests pass a clock). */
  constructor(dir: string, now: () => number = Date.now) {
    this.#dir = dir
    this.#now = now
  }

  /** File name of a key: a hash, so that host names never become paths. */
  #file(key: string): string {
    return join(this.#dir, `${createHash('sha256').update(key).digest('hex')}.jwt`)
  }

  /** The cached token of `key`, or undefined when there is none, it expired, or it is unreadable. */
  get(key: string): string | undefined {
    let token: string
    try {
      token = readFileSync(this.#file(key), 'utf8').trim()
    } catch {
      return undefined
    }
    let exp: number | undefined
    try {
      exp = expiryOf(token)
    } catch {
      this.delete(key)
      return undefined
    }
    if (exp !== undefined && exp * 1000 <= this.#now()) {
      this.delete(key)
      return undefined
    }
    return token
  }

  /** Stores `token` for `key` (mode 0600, atomically: a reader never sees half a token). */
  set(key: string, token: string): void {
    expiryOf(token) // refuse to store what could never be sent
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
    // mkdir's mode does not apply to a directory that already existed.
    chmodSync(this.#dir, 0o700)
    const file = this.#file(key)
    const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`
    writeFileSync(temp, token, { mode: 0o600, flag: 'wx' })
    renameSync(temp, file)
  }

  /** Forgets the token of `key` (the server refused it). */
  delete(key: string): void {
    rmSync(this.#file(key), { force: true })
  }

  /** Forgets every token (`portcullis logout`); returns how many there were. */
  clear(): number {
    let names: string[]
    try {
      names = readdirSync(this.#dir)
    } catch {
      return 0
    }
    let removed = 0
    for (const name of names) {
      if (!name.endsWith('.jwt') && !name.endsWith('.tmp')) continue
      rmSync(join(this.#dir, name), { force: true })
      if (name.endsWith('.jwt')) removed++
    }
    return removed
  }
}
