/**
 * The HTTP client of the directory providers: JSON over `fetch`, one time limit for a whole sync
 * (`idp_refresh_directory_timeout`), and throttling handled the way the providers document it:
 * 429 (and 503) with `Retry-After` (seconds or an HTTP date) are retried after that long, else
 * with exponential backoff; Okta's and GitHub's rate-limit headers (`X-Rate-Limit-Reset`,
 * `X-RateLimit-Reset`, epoch seconds) when the remaining count is 0. Credentials never appear in
 * errors or logs.
 */
import { CodedError } from '../shared/errors.js'

export type DirectoryFetch = (url: string, init: RequestInit) => Promise<Response>

/** A provider API answered with an error (or not at all). */
export class DirectoryApiError extends CodedError {
  readonly code = 'ERR_DIRECTORY_API'
  constructor(
    message: string,
    readonly status: number | undefined,
  ) {
    super(message)
    this.name = 'DirectoryApiError'
  }
}

export interface DirectoryHttpOptions {
  readonly fetch?: DirectoryFetch | undefined
  /** Aborts every request of this sync (the sync's time limit). */
  readonly signal: AbortSignal
  /** Retries of one request after throttling or a 5xx (default 5). */
  readonly maxRetries?: number
  /** First backoff delay in ms when the answer names none (default 1000). */
  readonly backoffMs?: number | undefined
  /** Longest wait the client accepts for one retry, in ms (default 60 s). */
  readonly maxWaitMs?: number
  /** Called when the provider throttles (metrics, logs). */
  readonly onThrottle?: ((waitMs: number, url: string) => void) | undefined
}

export interface JsonAnswer {
  readonly body: unknown
  readonly headers: Headers
  readonly status: number
}

export class DirectoryHttp {
  readonly #options: DirectoryHttpOptions
  readonly #fetch: DirectoryFetch
  /** Requests made (tests and metrics). */
  requests = 0
  throttled = 0

  constructor(options: DirectoryHttpOptions) {
    this.#options = options
    this.#fetch = options.fetch ?? ((url, init) => fetch(url, init))
  }

  /** One request, retried after throttling and server errors; rejects on any other non-2xx. */
  async json(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}, accept: readonly number[] = []): Promise<JsonAnswer> {
    const maxRetries = this.#options.maxRetries ?? 5
    const pathOnly = safeUrl(url)
    for (let attempt = 0; ; attempt++) {
      const signal = this.#options.signal
      if (signal.aborted) throw new DirectoryApiError(`${pathOnly}: the directory sync ran out of time (idp_refresh_directory_timeout)`, undefined)
      let response: Response
      try {
        this.requests++
        response = await this.#fetch(url, { method: init.method ?? 'GET', headers: { accept: 'application/json', ...init.headers }, ...(init.body !== undefined ? { body: init.body } : {}), signal, redirect: 'error' })
      } catch (err) {
        if (signal.aborted) throw new DirectoryApiError(`${pathOnly}: the directory sync ran out of time (idp_refresh_directory_timeout)`, undefined)
        if (attempt >= maxRetries) throw new DirectoryApiError(`${pathOnly}: ${err instanceof Error ? err.message : String(err)}`, undefined)
        await this.#wait(this.#backoff(attempt), url)
        continue
      }
      if ((response.status >= 200 && response.status < 300) || accept.includes(response.status)) {
        const text = await response.text()
        let body: unknown = undefined
        if (text !== '') {
          try {
            body = JSON.parse(text)
          } catch {
            throw new DirectoryApiError(`${pathOnly}: the answer is not JSON`, response.status)
          }
        }
        return { body, headers: response.headers, status: response.status }
      }
      const wait = this.#throttleWait(response, attempt)
      await response.body?.cancel().catch(() => undefined)
      if (wait === undefined || attempt >= maxRetries) {
        throw new DirectoryApiError(`${init.method ?? 'GET'} ${pathOnly}: HTTP ${response.status}`, response.status)
      }
      this.throttled++
      this.#options.onThrottle?.(wait, pathOnly)
      await this.#wait(wait, url)
    }
  }

  /** How long to wait before retrying this answer, or undefined when it is not worth a retry. */
  #throttleWait(response: Response, attempt: number): number | undefined {
    const status = response.status
    const h = response.headers
    const remaining = h.get('x-rate-limit-remaining') ?? h.get('x-ratelimit-remaining')
    const limited = status === 429 || status === 503 || ((status === 403 || status === 429) && remaining === '0')
    // A server error is retried twice (a passing fault); throttling up to maxRetries times.
    if (!limited && (status < 500 || attempt >= 2)) return undefined
    const retryAfter = h.get('retry-after')
    if (retryAfter !== null) {
      const seconds = Number(retryAfter)
      if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
      const date = Date.parse(retryAfter)
      if (!Number.isNaN(date)) return Math.max(0, date - Date.now())
    }
    const reset = h.get('x-rate-limit-reset') ?? h.get('x-ratelimit-reset')
    if (remaining === '0' && reset !== null && Number.isFinite(Number(reset))) return Math.max(0, Number(reset) * 1000 - Date.now())
    return this.#backoff(attempt)
  }

  #backoff(attempt: number): number {
    const base = this.#options.backoffMs ?? 1000
    return base * 2 ** attempt * (0.5 + Math.random() / 2)
  }

  async #wait(ms: number, url: string): Promise<void> {
    const max = this.#options.maxWaitMs ?? 60_000
    if (ms > max) throw new DirectoryApiError(`${safeUrl(url)}: the provider asks to wait ${Math.ceil(ms / 1000)} s, longer than this sync may`, 429)
    const signal = this.#options.signal
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        signal.removeEventListener('abort', done)
        resolve()
      }
      signal.addEventListener('abort', done, { once: true })
    })
  }
}

/** The URL without its query (which may carry tokens or filters) for messages. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}`
  } catch {
    return '(bad URL)'
  }
}

/** The `rel="next"` target of a `Link` header (GitHub, Okta), kept on the same origin. */
export function nextLink(link: string | null, current: string): string | undefined {
  if (!link) return undefined
  for (const match of link.matchAll(/<([^>]*)>\s*;\s*rel="?([^";]*)"?/g)) {
    const [, target = '', rels = ''] = match
    if (!rels.split(/\s+/).includes('next')) continue
    const next = new URL(target, current)
    if (next.origin !== new URL(current).origin) throw new DirectoryApiError(`pagination link leaves the API (${next.origin})`, undefined)
    return next.href
  }
  return undefined
}

const MAX_LINKED_PAGES = 100_000

/** Every item of a JSON-array list whose pages follow `Link: rel="next"` (GitHub, GitLab, Okta). */
export async function listByLinks(http: DirectoryHttp, first: string, headers: Record<string, string>, label: string): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = []
  let url: string | undefined = first
  for (let page = 0; url; page++) {
    if (page >= MAX_LINKED_PAGES) throw new DirectoryApiError(`${label}: too many pages`, undefined)
    const answer = await http.json(url, { headers })
    if (!Array.isArray(answer.body)) throw new DirectoryApiError(`${label}: expected a JSON array`, answer.status)
    out.push(...(answer.body as Array<Record<string, unknown>>))
    url = nextLink(answer.headers.get('link'), url)
  }
  return out
}

/**
 * An OAuth access token for a directory API, fetched by `request` and reused until a minute
 * before it expires (`expires_in`, else `defaultLifetimeS`).
 */
export class AccessTokenCache {
  #token: { value: string; expiresAt: number } | undefined

  constructor(
    private readonly label: string,
    private readonly request: (http: DirectoryHttp) => Promise<JsonAnswer>,
    private readonly defaultLifetimeS = 3600,
  ) {}

  async get(http: DirectoryHttp): Promise<string> {
    if (this.#token && this.#token.expiresAt > Date.now() + 60_000) return this.#token.value
    const { body } = await this.request(http)
    const t = (body ?? {}) as { access_token?: unknown; expires_in?: unknown }
    if (typeof t.access_token !== 'string') throw new DirectoryApiError(`${this.label} token endpoint: no access_token`, undefined)
    this.#token = { value: t.access_token, expiresAt: Date.now() + (typeof t.expires_in === 'number' ? t.expires_in : this.defaultLifetimeS) * 1000 }
    return this.#token.value
  }
}
