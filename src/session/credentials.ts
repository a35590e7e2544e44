/**
 * Where a request carries its session handle (the forms Pomerium accepts), and whether an unauthenticated
 * request should be sent to sign in or told 401 (as Pomerium does).
 */
import { preferredType } from '../ui/negotiate.js'
import { readCookie } from './cookies.js'

type Headers = Readonly<Record<string, string | string[] | undefined>>

export type HandleSource = 'cookie' | 'authorization' | 'x-pomerium-authorization' | 'query'

export interface FoundHandle {
  readonly token: string
  readonly source: HandleSource
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v
}

/**
 * The session handle of a request. Explicit credentials (headers, then the query) win over the
 * cookie, so a script's token is never shadowed by a browser cookie; the cookie is the last resort.
 */
export function findHandle(headers: Headers, query: string, cookieName: string): FoundHandle | undefined {
  const authorization = single(headers['authorization'])
  if (authorization !== undefined) {
    const m = /^Pomerium\s+(\S+)$/i.exec(authorization) ?? /^Bearer\s+Pomerium-(\S+)$/i.exec(authorization)
    if (m?.[1]) return { token: m[1], source: 'authorization' }
  }
  const xpa = single(headers['x-pomerium-authorization'])
  if (xpa !== undefined && xpa.trim() !== '') return { token: xpa.trim().replace(/^Pomerium\s+/i, ''), source: 'x-pomerium-authorization' }
  if (query.includes('pomerium_session=')) {
    const values = new URLSearchParams(query.slice(1)).getAll('pomerium_session')
    if (values.length === 1 && values[0]) return { token: values[0], source: 'query' }
  }
  const cookie = readCookie(headers['cookie'], cookieName)
  return cookie === undefined ? undefined : { token: cookie, source: 'cookie' }
}

/** What a browser or a script may ask for; a browser navigating (text/html first) is sent to sign in. */
const CANDIDATES = ['text/html', 'application/json', 'text/plain', 'application/grpc', 'application/grpc-web', 'application/grpc-web+proto', 'application/grpc-web-text'] as const

/**
 * True when a request without a valid session should be redirected to sign in (a browser
 * navigating), false when it should get 401 (scripts, XHR, gRPC, requests that carried a token).
 */
export function shouldRedirectToSignIn(headers: Headers, carriedToken: boolean): boolean {
  if (carriedToken) return false
  const contentType = single(headers['content-type']) ?? ''
  if (contentType.startsWith('application/grpc')) return false
  if ((single(headers['x-requested-with']) ?? '').toLowerCase() === 'xmlhttprequest') return false
  return preferredType(headers['accept'], CANDIDATES) === 'text/html'
}
