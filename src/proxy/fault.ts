/**
 * Fault injection, FOR TESTS ONLY (docs/proxy.md, "Errors"): with `PORTCULLIS_TEST_FAULT_PATH`
 * set to a path prefix such as `/__fault`, a routed request or upgrade whose path is
 * `<prefix>/throw` throws inside the handler and one whose path is `<prefix>/reject` fails
 * asynchronously, so that tests can show the error boundary answers `500` and the process keeps
 * serving. The variable is read once at start; unset (always, in production) there is no fault.
 */
import type { Logger } from '../shared/log.js'

export const FAULT_PATH_ENV = 'PORTCULLIS_TEST_FAULT_PATH'

/** Returns nothing for a path without a fault; throws, or returns a promise that rejects. */
export type FaultInjector = (path: string) => Promise<never> | undefined

export function faultInjectorFromEnv(env: NodeJS.ProcessEnv, logger: Logger): FaultInjector | undefined {
  const prefix = env[FAULT_PATH_ENV]
  if (prefix === undefined || prefix === '') return undefined
  logger.warn({ [FAULT_PATH_ENV]: prefix }, `${FAULT_PATH_ENV} is set: requests under ${prefix} fail on purpose (for tests only)`)
  return (path) => {
    if (path === `${prefix}/throw`) throw new Error('injected fault (thrown)')
    if (path === `${prefix}/reject`) {
      return new Promise<never>((_, reject) => setImmediate(() => reject(new Error('injected fault (rejected)'))))
    }
    return undefined
  }
}
