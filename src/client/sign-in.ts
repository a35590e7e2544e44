/**
 * The client's sign-in, as pomerium-cli does it (Pomerium docs: Programmatic access): a one-shot
 * listener on 127.0.0.1, `GET <server>/.pomerium/api/v1/login?pomerium_redirect_uri=
 * http://127.0.0.1:<port>/` whose body is the sign-in URL, the browser sent there, and finally
 * the browser's redirect to `http://127.0.0.1:<port>/?pomerium_jwt=<token>`. The token goes into
 * the JWT cache. Concurrent callers that need the same server's sign-in share one.
 */
import { spawn } from 'node:child_process'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { JwtCache } from './jwt-cache.js'
import { get, type ProxyEndpoint } from './proxy.js'

/** How long the loopback listener waits for the browser (pomerium-cli waits for the user too). */
export const SIGN_IN_TIMEOUT_MS = 5 * 60_000

/** How a sign-in URL reaches the user. */
export type OpenBrowser = (url: string) => void | Promise<void>

export interface SignInOptions {
  readonly cache: JwtCache
  /** Writes a message for the user (the command's stderr). */
  readonly say: (line: string) => void
  /** `--browser-cmd CMD`: runs `CMD <url>`; tests pass a function instead. */
  readonly browser?: string | OpenBrowser
  readonly timeoutMs?: number
}

/** Splits `--browser-cmd` on spaces: the first word is the program, the URL is appended as the last argument. */
export function browserCommand(cmd: string, url: string): { file: string; args: string[] } {
  const words = cmd.split(' ').filter((w) => w !== '')
  const file = words[0]
  if (file === undefined) throw new Error('--browser-cmd is empty')
  return { file, args: [...words.slice(1), url] }
}

/**
 * Starts a program without waiting for it; an unstartable one is reported, never thrown.
 * `failed` resolves with a message if it exits unsuccessfully (it never resolves otherwise).
 */
function launch(file: string, args: string[]): Promise<{ started: boolean; failed: Promise<string> }> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: 'ignore', detached: true })
    const failed = new Promise<string>((fail) => {
      child.once('exit', (code, signal) => {
        if (code !== 0) fail(`the browser command (${file}) exited with ${signal ?? `status ${code}`} before the sign-in completed`)
      })
    })
    child.once('error', () => resolve({ started: false, failed }))
    child.once('spawn', () => {
      child.unref()
      resolve({ started: true, failed })
    })
  })
}

/** Opens the sign-in URL; resolves with a promise of why the browser failed (an explicit command that exited non-zero). */
async function openUrl(url: string, browser: string | OpenBrowser | undefined, say: (line: string) => void): Promise<{ failed?: Promise<string> }> {
  if (typeof browser === 'function') {
    say(`Your browser has been opened to visit:\n\n${url}\n`)
    await browser(url)
    return {}
  }
  let opened = false
  let failed: Promise<string> | undefined
  if (browser !== undefined) {
    const { file, args } = browserCommand(browser, url)
    const launched = await launch(file, args)
    opened = launched.started
    // Only an explicit --browser-cmd is watched: xdg-open's own exit says little about the browser.
    if (opened) failed = launched.failed
  } else {
    for (const file of process.platform === 'darwin' ? ['open'] : ['xdg-open', 'open']) {
      if ((await launch(file, [url])).started) {
        opened = true
        break
      }
    }
  }
  say(opened ? `Your browser has been opened to visit:\n\n${url}\n` : `Open this URL in a browser to sign in:\n\n${url}\n`)
  return failed ? { failed } : {}
}

const DONE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed in</title></head>
<body><h1>Signed in</h1><p>You are signed in: you may close this window and return to the terminal.</p></body></html>
`

/** The loopback listener: resolves with the first well-formed `pomerium_jwt` it is given. */
interface Catcher {
  readonly redirectUri: string
  readonly token: Promise<string>
  close(): void
}

function startCatcher(accept: (token: string) => boolean, timeoutMs: number): Promise<Catcher> {
  return new Promise((resolveStart, rejectStart) => {
    let resolveToken!: (t: string) => void
    let rejectToken!: (e: Error) => void
    const token = new Promise<string>((res, rej) => {
      resolveToken = res
      rejectToken = rej
    })
    // Unhandled until the caller awaits it, which happens after the login request.
    token.catch(() => undefined)
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1')
      const jwt = url.searchParams.get('pomerium_jwt')
      if (req.method !== 'GET' || jwt === null || jwt === '' || !accept(jwt)) {
        res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' })
        res.end('This address only takes the sign-in result (pomerium_jwt).\n')
        return
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', connection: 'close', 'cache-control': 'no-store' })
      res.end(DONE_PAGE)
      resolveToken(jwt)
      close()
    })
    const timer = setTimeout(() => {
      rejectToken(new Error(`sign-in was not completed within ${Math.round(timeoutMs / 1000)} s`))
      close()
    }, timeoutMs)
    let closed = false
    const close = (): void => {
      if (closed) return
      closed = true
      clearTimeout(timer)
      server.close()
      server.closeIdleConnections()
    }
    server.once('error', rejectStart)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolveStart({
        redirectUri: `http://127.0.0.1:${port}/`,
        token,
        close: () => {
          rejectToken(new Error('sign-in abandoned'))
          close()
        },
      })
    })
  })
}

/** Signs in to servers, one sign-in per server at a time. */
export class SignIn {
  readonly #options: SignInOptions
  readonly #inFlight = new Map<string, Promise<string>>()

  constructor(options: SignInOptions) {
    this.#options = options
  }

  /** A fresh token for `endpoint`, stored in the cache; callers arriving meanwhile share the same sign-in. */
  signIn(endpoint: ProxyEndpoint): Promise<string> {
    const key = endpoint.cacheKey
    const running = this.#inFlight.get(key)
    if (running) return running
    const attempt = this.#run(endpoint).finally(() => this.#inFlight.delete(key))
    this.#inFlight.set(key, attempt)
    return attempt
  }

  async #run(endpoint: ProxyEndpoint): Promise<string> {
    const { cache, say } = this.#options
    const catcher = await startCatcher((jwt) => {
      try {
        cache.set(endpoint.cacheKey, jwt)
        return true
      } catch {
        return false
      }
    }, this.#options.timeoutMs ?? SIGN_IN_TIMEOUT_MS)
    try {
      const login = await get(endpoint, `/.pomerium/api/v1/login?pomerium_redirect_uri=${encodeURIComponent(catcher.redirectUri)}`)
      const signInUrl = login.body.trim()
      if (login.status !== 200 || !/^https?:\/\//i.test(signInUrl)) {
        throw new Error(`sign-in: ${endpoint.origin}/.pomerium/api/v1/login answered ${login.status}${signInUrl !== '' ? `: ${signInUrl.split('\n')[0]?.slice(0, 200)}` : ''}`)
      }
      const browser = await openUrl(signInUrl, this.#options.browser, say)
      if (!browser.failed) return await catcher.token
      return await Promise.race([
        catcher.token,
        browser.failed.then((why) => {
          throw new Error(why)
        }),
      ])
    } finally {
      catcher.close()
    }
  }
}
