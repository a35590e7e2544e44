/**
 * Who is asking: from a request's credentials to a live session, checking everything a forged or
 * stale handle could get wrong. This is the first step of every authorisation decision.
 *
 * A handle counts only when it is signed with the shared secret and unexpired, names this host
 * in its audience, belongs to the route's identity provider, and names a session that still
 * exists for the same user and provider. Anything else is "no session" — never an error page
 * and never access (hostile-input case: sessions / cookies / csrf).
 */
import { findHandle } from './credentials.js'
import type { FoundHandle, HandleSource } from './credentials.js'
import { verifySessionHandle } from './session-handle.js'
import type { SessionHandle } from './session-handle.js'
import type { Session, SessionStore } from './session-store.js'

interface SessionRequest {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Raw query string including `?`, or ''. */
  readonly query: string
  /** Canonical request host (lower case, no port). */
  readonly host: string
  /** Tunnels: the names the client dialled Portcullis by, whose tokens are accepted too. */
  readonly tokenHosts?: readonly string[]
}

interface SessionLoaderDeps {
  readonly sessions: SessionStore
  readonly sharedSecret: Buffer
  readonly cookieName: string
  readonly nowS?: () => number
  /** Handles already verified with `sharedSecret`, by their exact text (skips HMAC and JSON per request). */
  readonly verified?: VerifiedHandleCache
  /** The request path's slim view (no tokens; `SessionStore.getForRequest`) is enough. */
  readonly forRequest?: boolean
}

/**
 * A bounded memo of verified handles. The key is the whole signed token, so a hit means the
 * same bytes were verified before with the same key; expiry is still checked on every use.
 */
export class VerifiedHandleCache {
  readonly #entries = new Map<string, SessionHandle>()
  readonly #max: number

  constructor(max = 10_000) {
    this.#max = max
  }

  verify(token: string, key: Buffer, nowS: number): SessionHandle | undefined {
    const hit = this.#entries.get(token)
    if (hit) return nowS > hit.exp + 60 ? undefined : hit
    const handle = verifySessionHandle(token, key, nowS)
    if (handle) {
      if (this.#entries.size >= this.#max) this.#entries.clear()
      this.#entries.set(token, handle)
    }
    return handle
  }
}

type SessionLoadResult =
  /** No credentials at all. */
  | { readonly kind: 'none' }
  /** Credentials were presented but do not name a live session; `source` says where they came from. */
  | { readonly kind: 'invalid'; readonly source: HandleSource; readonly reason: string }
  | { readonly kind: 'ok'; readonly session: Session; readonly handle: SessionHandle; readonly source: HandleSource }

/** `found`: the request's credential when the caller has located it already (`findHandle`). */
export async function loadSession(
  req: SessionRequest,
  routeIdpId: string,
  deps: SessionLoaderDeps,
  found: FoundHandle | undefined = findHandle(req.headers, req.query, deps.cookieName),
): Promise<SessionLoadResult> {
  if (!found) return { kind: 'none' }
  const invalid = (reason: string): SessionLoadResult => ({ kind: 'invalid', source: found.source, reason })
  const nowS = deps.nowS?.() ?? Math.floor(Date.now() / 1000)
  const handle = deps.verified ? deps.verified.verify(found.token, deps.sharedSecret, nowS) : verifySessionHandle(found.token, deps.sharedSecret, nowS)
  if (!handle) return invalid('the session token is not valid')
  if (!audienceIncludes(handle.aud, req.host) && !(req.tokenHosts?.some((h) => audienceIncludes(handle.aud, h)) ?? false)) return invalid('the session token was not issued for this host')
  if (handle.idp_id !== routeIdpId) return invalid('the session belongs to another identity provider')
  const session = deps.forRequest ? await deps.sessions.getForRequest(handle.jti) : await deps.sessions.get(handle.jti)
  if (!session) return invalid('the session has ended')
  if (session.userId !== handle.sub || session.idpId !== handle.idp_id) return invalid('the session token does not match the session')
  return { kind: 'ok', session, handle, source: found.source }
}

/**
 * Whether a handle's audience covers `host`: the host itself, or a `.domain` entry (put there
 * only when `cookie_domain` shares one cookie across subdomains) that the host is under.
 */
export function audienceIncludes(aud: readonly string[], host: string): boolean {
  for (const a of aud) {
    if (a === host) return true
    if (a.startsWith('.') && a.length > 1 && host.endsWith(a)) return true
  }
  return false
}
