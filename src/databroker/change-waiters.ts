/**
 * Plumbing shared by the record-store backends (memory, SQLite, PostgreSQL) for `sync` streams:
 * the set of waiters a stream parks on until something changes, and the hand-written iterator that
 * runs `next()` calls one after another. Each backend had its own identical copy; keeping one here
 * means a fix to how waiting or cancelling works reaches every backend at once.
 */

import type { DataRecord } from './types.js'

/** One parked wait: `promise` settles when woken, aborted or cancelled. */
interface ChangeWait {
  readonly promise: Promise<void>
  /** Settles `promise` now and forgets the waiter (idempotent). */
  readonly cancel: () => void
}

/**
 * The `sync` streams waiting for a change. A backend calls `wakeAll()` after every change it stores
 * (and on close), and each waiting stream then reads again.
 */
export class ChangeWaiters {
  readonly #waiters = new Set<() => void>()

  /**
   * Parks until the next `wakeAll()`, until `signal` aborts, or until `cancel()` is called, so that
   * a stream's `return()` can end a `next()` that is waiting. The promise never rejects.
   */
  wait(signal: AbortSignal | undefined): ChangeWait {
    // An abort event has already fired for an aborted signal: a listener added now would never run.
    if (signal?.aborted === true) return { promise: Promise.resolve(), cancel: () => undefined }
    let wake!: () => void
    const promise = new Promise<void>((resolve) => {
      wake = (): void => {
        this.#waiters.delete(wake)
        signal?.removeEventListener('abort', wake)
        resolve()
      }
    })
    this.#waiters.add(wake)
    signal?.addEventListener('abort', wake, { once: true })
    return { promise, cancel: wake }
  }

  /** Wakes every waiter parked now; ones that park later wait for the next call. */
  wakeAll(): void {
    for (const wake of [...this.#waiters]) wake()
  }
}

/**
 * An `AsyncIterator` whose `next()` calls run `step` one after another, as they would on a
 * generator, but whose `return()` does not queue behind them: it calls `onReturn` (which should
 * mark the stream finished and cancel any wait) and resolves at once. This is why the `sync`
 * streams are not async generators: a `break` out of `for await` would otherwise hang until the
 * next change arrived.
 */
function serialIterator<T>(
  step: () => Promise<IteratorResult<T>>,
  onReturn: () => void,
): AsyncIterator<T> {
  let queue: Promise<unknown> = Promise.resolve()
  return {
    next: () => {
      const result = queue.then(step)
      queue = result.catch(() => undefined)
      return result
    },
    return: () => {
      onReturn()
      return Promise.resolve({ done: true, value: undefined })
    },
  }
}

interface PagedChangesOptions<T> {
  readonly signal: AbortSignal | undefined
  readonly waiters: ChangeWaiters
  /**
   * Reads the next page of changes after the stream's cursor (and moves the cursor); an empty
   * page means caught up. What it throws ends the stream with that error. A backend whose read is
   * synchronous returns the page directly, so that nothing runs between reading and parking (a
   * change made in between would wake nobody).
   */
  readonly nextPage: () => T[] | Promise<T[]>
  /** Whether an empty page may park (PostgreSQL: not when a wake-up came while it queried). */
  readonly mayWait?: () => boolean
  readonly toRecord: (item: T) => DataRecord
}

/**
 * The `sync` stream every backend runs: hand out the page, read the next one when it runs out,
 * park on the waiters when caught up, end on abort or `return()` (also one that comes while a
 * page is being read).
 */
export function pagedChanges<T>(options: PagedChangesOptions<T>): AsyncIterator<DataRecord> {
  const { signal, waiters, nextPage, toRecord } = options
  const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined }
  const aborted = (): boolean => signal?.aborted === true
  let finished = false
  let batch: T[] = []
  let index = 0
  let cancelWait: (() => void) | undefined

  const step = async (): Promise<IteratorResult<DataRecord>> => {
    for (;;) {
      if (finished) return DONE
      if (aborted()) {
        finished = true
        return DONE
      }
      if (index < batch.length) return { done: false, value: toRecord(batch[index++] as T) }
      try {
        const page = nextPage()
        batch = page instanceof Promise ? await page : page
        index = 0
      } catch (err) {
        finished = true
        throw err
      }
      if (batch.length === 0 && !finished && !aborted() && (options.mayWait?.() ?? true)) {
        const { promise, cancel } = waiters.wait(signal)
        cancelWait = cancel
        await promise
        cancelWait = undefined
      }
    }
  }

  return serialIterator(step, () => {
    finished = true
    cancelWait?.()
  })
}
