/**
 * The wire format of the internal API between Portcullis services, shared by `server.ts` and
 * `client.ts`: HTTP/2 with JSON bodies, authenticated by the internal credential (`token.ts`).
 *
 * - Cleartext HTTP/2 ("h2c", prior knowledge) when `grpc_insecure` is true, TLS otherwise. A
 *   client picks by the URL scheme (`http:` or `https:`) and always verifies the server's
 *   certificate (system roots plus `certificate_authority`); there is no way to turn that off.
 * - Every request is `POST <path>` with a JSON body and `Authorization: Bearer <internal
 *   credential>` (`./token.ts`). A request without a valid credential gets 401 before anything
 *   else is looked at: no routing, no body read.
 * - A unary answer is a JSON body: the result with status 200, or `{code, message}` otherwise.
 * - A streaming answer is status 200 followed by newline-delimited JSON, one object per line,
 *   with a `{"heartbeat":true}` line every `heartbeatMs` so that idle proxies and the client's
 *   liveness check keep the stream open; an error ends it with an `{"error":{code,message}}`
 *   line. It runs until the client cancels the stream or the server closes.
 */

import { CodedError, isErrorCode } from '../shared/errors.js'
import type { ErrorCode } from '../shared/errors.js'

/** The largest request or unary response body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024
/** Default interval of heartbeat lines on streaming answers. */
export const DEFAULT_HEARTBEAT_MS = 10_000

/** The content type of request bodies and unary answers. */
export const JSON_CONTENT_TYPE = 'application/json'
/** The content type of streaming answers. */
export const STREAM_CONTENT_TYPE = 'application/x-ndjson'

/**
 * An error answer: an HTTP status and a stable code (docs/reference/errors.md). A code read off
 * the wire that this build does not know becomes `ERR_BAD_ANSWER`, the peer's code kept in the
 * message.
 */
export class InternalApiError extends CodedError {
  readonly status: number
  readonly code: ErrorCode

  constructor(status: number, code: ErrorCode, message: string) {
    super(message)
    this.name = 'InternalApiError'
    this.status = status
    this.code = code
  }
}

/**
 * The call did not get an answer: the connection failed or broke. `beforeSend` is true when the
 * request certainly never reached the server (the connection was never established, or the
 * server refused the stream unprocessed), so that retrying it elsewhere cannot apply it twice.
 */
export class InternalTransportError extends CodedError {
  readonly code = 'ERR_INTERNAL_UNREACHABLE'
  readonly beforeSend: boolean

  constructor(message: string, beforeSend: boolean, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'InternalTransportError'
    this.beforeSend = beforeSend
  }
}

/** Parses a request or unary answer body: empty is `{}`. Throws on text that is not JSON. */
export function parseJsonBody(text: string): unknown {
  return text === '' ? {} : JSON.parse(text)
}

/** The body of an error answer. */
export function errorBody(code: string, message: string): { code: string; message: string } {
  return { code, message }
}

/** The error an answer with status `status` and body `body` (parsed, if it was JSON) stands for. */
export function answerError(status: number, body: unknown): InternalApiError {
  const p = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  const message = typeof p['message'] === 'string' ? p['message'] : `HTTP ${status}`
  return apiErrorFromWire(status, p['code'], message)
}

/**
 * The error a peer reported with `code` (any JSON value): a registered code as it is; anything
 * else `ERR_BAD_ANSWER`, with the peer's code at the start of the message.
 */
export function apiErrorFromWire(status: number, code: unknown, message: string): InternalApiError {
  if (isErrorCode(code)) return new InternalApiError(status, code, message)
  const named = typeof code === 'string' ? code : `HTTP_${status}`
  return new InternalApiError(status, 'ERR_BAD_ANSWER', `${named}: ${message}`)
}

/** One line of a streaming answer. */
export function encodeLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`
}

/** The line that ends a stream with an error. */
export function errorLine(err: InternalApiError): { error: { code: string; message: string } } {
  return { error: errorBody(err.code, err.message) }
}

/** Splits the text of a streaming answer, as it arrives, into lines (without their newline). */
export class LineSplitter {
  #partial = ''

  /** Adds `text` and returns the lines it completed, empty ones left out. */
  push(text: string): string[] {
    this.#partial += text
    const lines: string[] = []
    let nl = this.#partial.indexOf('\n')
    while (nl >= 0) {
      const line = this.#partial.slice(0, nl)
      this.#partial = this.#partial.slice(nl + 1)
      if (line !== '') lines.push(line)
      nl = this.#partial.indexOf('\n')
    }
    return lines
  }
}
