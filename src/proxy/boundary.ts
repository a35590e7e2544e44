/**
 * The error boundary of the proxy's request and upgrade handlers: the one every listener uses
 * (src/shared/boundary.ts), re-exported where the proxy has always imported it from.
 */
export { runGuarded } from '../shared/boundary.js'
export type { HandlerOutcome } from '../shared/boundary.js'
