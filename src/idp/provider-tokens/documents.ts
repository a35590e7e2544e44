/**
 * Reading documents from a provider (discovery, JWKS, UserInfo): which URLs are acceptable, a
 * size-limited body reader and a strict JSON-object parser.
 */
import { isAllowedProviderUrl } from '../../config/providers.js'
import type { IdpFetch } from '../oidc.js'

/** Largest discovery, JWKS or UserInfo document we read, in bytes. */
export const MAX_DOCUMENT_BYTES = 512 * 1024
/** Timeout per request to the provider, in seconds, unless configured. */
export const DEFAULT_TIMEOUT_SECONDS = 10

/** Why a provider URL is unacceptable (not HTTPS off loopback, credentials, ...), or undefined. */
export function urlProblem(raw: string): string | undefined {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return 'is not a URL'
  }
  if (!isAllowedProviderUrl(url)) {
    return 'must be https (plain http only on loopback hosts)'
  }
  if (url.username !== '' || url.password !== '') return 'must not carry credentials'
  if (url.hash !== '') return 'must not have a fragment'
  return undefined
}

export const defaultFetch: IdpFetch = (url, init) => fetch(url, init as RequestInit)

/** Read a response body, refusing more than `max` bytes (a provider cannot exhaust our memory). */
export async function readLimited(response: Response, max: number): Promise<Buffer> {
  const length = Number(response.headers.get('content-length') ?? NaN)
  if (Number.isFinite(length) && length > max) {
    await response.body?.cancel()
    throw new Error('response too large')
  }
  if (!response.body) return Buffer.alloc(0)
  const chunks: Buffer[] = []
  let total = 0
  const reader = response.body.getReader()
  for (;;) {
    const read = (await reader.read()) as { done: boolean; value?: Uint8Array }
    if (read.done || !read.value) break
    total += read.value.byteLength
    if (total > max) {
      await reader.cancel()
      throw new Error('response too large')
    }
    chunks.push(Buffer.from(read.value))
  }
  return Buffer.concat(chunks)
}

export function parseJsonObject(bytes: Buffer | string): Record<string, unknown> | undefined {
  try {
    const text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    const value: unknown = JSON.parse(text)
    return isPlainObject(value) ? value : undefined
  } catch {
    return undefined
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
