/**
 * Stop requests (SIGTERM, SIGINT), heard from the first moment of `serve` or `demo`. A stop that
 * arrives during start-up is remembered: start-up checks it before opening each listener and
 * ends, closing what it had opened, instead of coming up; a start-up step that does not finish
 * soon after the stop (a database that does not answer) is abandoned, so the process exits
 * promptly whenever the signal comes.
 */
import type { Logger } from '../shared/log.js'
import { CodedError } from '../shared/errors.js'

/** How long a stop waits for the start-up step in progress before abandoning it. */
export const STARTUP_STOP_GRACE_MS = 2_000

/** Thrown by start-up when a stop was requested: not a failure, the process exits 0. */
export class StartupStopped extends CodedError {
  readonly code = 'ERR_STARTUP_STOPPED'

  constructor(readonly signal: string) {
    super(`stopped by ${signal} during start-up`)
    this.name = 'StartupStopped'
  }
}

export class StopRequest {
  #signal: string | undefined
  #resolve: (signal: string) => void = () => undefined
  /** Resolves with the signal's name at the first stop request. */
  readonly requested: Promise<string> = new Promise((resolve) => (this.#resolve = resolve))

  /** The signal of the stop request, once there is one. */
  get signal(): string | undefined {
    return this.#signal
  }

  request(signal: string): void {
    if (this.#signal !== undefined) return
    this.#signal = signal
    this.#resolve(signal)
  }

  /** Throws `StartupStopped` when a stop was requested: called before each listener opens. */
  throwIfRequested(): void {
    if (this.#signal !== undefined) throw new StartupStopped(this.#signal)
  }
}

let processStop: StopRequest | undefined

/**
 * The process's stop request; the first call installs the handlers. `once`: a second SIGTERM or
 * Ctrl-C gets Node's default action and ends the process at once, as people expect.
 */
export function processStopRequest(): StopRequest {
  if (processStop) return processStop
  const stop = new StopRequest()
  process.once('SIGTERM', () => stop.request('SIGTERM'))
  process.once('SIGINT', () => stop.request('SIGINT'))
  processStop = stop
  return stop
}

/**
 * Settles like `starting`, unless a stop arrives and `starting` has not settled within
 * `graceMs` after it: then rejects with `StartupStopped`, and the process exits without it.
 */
export async function unlessStopped<T>(starting: Promise<T>, stop: StopRequest, graceMs = STARTUP_STOP_GRACE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let settled = false
  const abandoned = stop.requested.then(
    (signal) =>
      new Promise<never>((_resolve, reject) => {
        // A stop after start-up is the running server's business, not this race's.
        if (!settled) timer = setTimeout(() => reject(new StartupStopped(signal)), graceMs)
      }),
  )
  try {
    return await Promise.race([starting, abandoned])
  } finally {
    settled = true
    clearTimeout(timer)
  }
}

/** What start-up has opened so far, closed newest first if it does not finish. */
export class OpenedResources {
  readonly #closers: (() => unknown)[] = []

  add(close: () => unknown): void {
    this.#closers.push(close)
  }

  /** Closes everything, newest first; a failure is logged and the rest still close. */
  async closeAll(logger: Logger): Promise<void> {
    while (this.#closers.length > 0) {
      const close = this.#closers.pop() as () => unknown
      try {
        await close()
      } catch (err) {
        logger.error({ err }, 'closing after an unfinished start-up failed')
      }
    }
  }
}
