import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runGuarded } from './boundary.js'

/** Resolves with the errors `runGuarded` reported for `handler`, once its promise (if any) settled. */
async function reported(handler: () => void | Promise<unknown>): Promise<unknown[]> {
  const errors: unknown[] = []
  runGuarded(handler, (err) => errors.push(err))
  // Let a rejected continuation reach the boundary.
  await new Promise((r) => setImmediate(r))
  return errors
}

test('a synchronous throw is reported, not thrown', async () => {
  const boom = new Error('boom')
  assert.deepEqual(
    await reported(() => {
      throw boom
    }),
    [boom],
  )
})

test('a rejection of the returned promise is reported, also when it comes later', async () => {
  const boom = new Error('later')
  assert.deepEqual(await reported(() => Promise.reject(boom)), [boom])
  assert.deepEqual(await reported(() => Promise.resolve().then(() => Promise.reject(boom))), [boom])
  assert.deepEqual(
    await reported(async () => {
      await Promise.resolve()
      throw boom
    }),
    [boom],
  )
})

test('a handler that succeeds reports nothing', async () => {
  assert.deepEqual(await reported(() => undefined), [])
  assert.deepEqual(await reported(() => Promise.resolve(1)), [])
})

test('an error handler that throws is contained too', async () => {
  let unhandled = 0
  const onUnhandled = (): void => {
    unhandled++
  }
  process.on('unhandledRejection', onUnhandled)
  try {
    assert.doesNotThrow(() =>
      runGuarded(
        () => {
          throw new Error('first')
        },
        () => {
          throw new Error('second')
        },
      ),
    )
    runGuarded(
      () => Promise.reject(new Error('first')),
      () => {
        throw new Error('second')
      },
    )
    await new Promise((r) => setImmediate(r))
    assert.equal(unhandled, 0)
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})
