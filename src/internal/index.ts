/**
 * The internal API between Portcullis services: `server.ts` answers calls, `client.ts` makes them
 * over one connection per URL, `pool.ts` spreads them over a service's URLs, `wire.ts` is the
 * format both sides share, and `token.ts` the credential every call carries.
 */
export type { InternalClientTls, StreamCall } from './client.js'
export { ServicePool } from './pool.js'
export type { PoolTarget, Retry } from './pool.js'
export { startInternalServer } from './server.js'
export type { InternalRoute, InternalServer, InternalServerTls } from './server.js'
export { apiErrorFromWire, InternalApiError, InternalTransportError, MAX_BODY_BYTES } from './wire.js'
