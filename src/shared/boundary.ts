/**
 * The error boundary of every listener (docs/reference/errors.md). A handler that throws, or a
 * promise of its that rejects, must cost one request a `500`, never the process: without this
 * the error reaches `uncaughtException` (or `unhandledRejection`), which ends the process and
 * every request in it.
 *
 * A handler returns the promise of its asynchronous continuation so that a rejection there is
 * caught as well. Errors thrown from event-emitter callbacks that the handler registered
 * (sockets, upstream streams) are not seen here.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'

import type { Logger } from './log.js'

/** What a handler returns: nothing, or the promise of the work it left running. */
export type HandlerOutcome = void | Promise<unknown>

/** Runs `handler`; a synchronous throw or a rejection of its promise goes to `onError` once. */
export function runGuarded(handler: () => HandlerOutcome, onError: (err: unknown) => void): void {
  let outcome: HandlerOutcome
  try {
    outcome = handler()
  } catch (err) {
    report(onError, err)
    return
  }
  if (outcome instanceof Promise) outcome.catch((err: unknown) => report(onError, err))
}

function report(onError: (err: unknown) => void, err: unknown): void {
  try {
    onError(err)
  } catch {
    // The error answer itself failed (a socket already gone): nothing more can be done for this
    // request, and the process must keep serving the others.
  }
}

/** Writes the `500` answer of a listener; called only while no header has been sent. */
export type InternalErrorAnswer = (req: IncomingMessage, res: ServerResponse, requestId: string) => void

/** The plain-text `500` of the listeners that people and probes read as text (health, metrics). */
export const plainTextInternalError: InternalErrorAnswer = (req, res, requestId) => {
  res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-request-id': requestId })
  res.end(req.method === 'HEAD' ? undefined : `internal error (request id ${requestId})\n`)
}

export interface GuardOptions {
  /** Names the listener in the log line, e.g. `metrics`. */
  readonly listener: string
  readonly logger: Logger
  /** Default: {@link plainTextInternalError}. */
  readonly answer?: InternalErrorAnswer
  /** The request id of a request; default a new UUID. */
  readonly requestId?: (req: IncomingMessage) => string
}

/**
 * A `node:http`/`node:https` request listener that runs `handler` inside the boundary: what
 * escapes it is logged (the method and path without the query, which may carry codes or tokens)
 * and answered `500` with the request id, or, once the answer has begun, ends the connection.
 */
export function guardedRequestListener(
  handler: (req: IncomingMessage, res: ServerResponse) => HandlerOutcome,
  options: GuardOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const answer = options.answer ?? plainTextInternalError
  return (req, res) => {
    runGuarded(
      () => handler(req, res),
      (err) => {
        const requestId = options.requestId?.(req) ?? randomUUID()
        options.logger.error({ err, requestId, listener: options.listener, method: req.method, path: (req.url ?? '').split('?')[0] }, `${options.listener}: request handling failed`)
        answerFailure(req, res, requestId, answer)
      },
    )
  }
}

/** Answers `500` unless an answer has begun; a half-sent answer can only be cut off. */
function answerFailure(req: IncomingMessage, res: ServerResponse, requestId: string, answer: InternalErrorAnswer): void {
  if (res.writableEnded) return
  if (res.headersSent) {
    res.destroy()
    return
  }
  answer(req, res, requestId)
}
