/**
 * The error boundary of the request and upgrade handlers. A handler step that throws, or a
 * promise of its that rejects, must cost one request a `500`, never the process: without this
 * the error reaches `uncaughtException`, which ends the process (and every request in it).
 *
 * A handler returns the promise of its asynchronous continuation (authorisation, an endpoint) so
 * that a rejection there is caught as well. Errors thrown from event-emitter callbacks that the
 * handler registered (sockets, upstream streams) are not seen here.
 */

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
