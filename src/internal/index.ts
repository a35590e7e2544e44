/**
 * The internal API between Portcullis services: `server.ts` answers calls, `client.ts` makes them
 * over one connection per URL, `pool.ts` spreads them over a service's URLs, `wire.ts` is the
 * format both sides share, and `token.ts` the credential every call carries.
 */
export { InternalConnection } from './client.js'
export type { InternalClientTls, StreamCall, StreamHandlers } from './client.js'
export { ServicePool } from './pool.js'
export type { PoolTarget, Retry, ServicePoolOptions } from './pool.js'
export { startInternalServer } from './server.js'
export type { InternalRoute, InternalServer, InternalServerOptions, InternalServerTls, StreamSend } from './server.js'
export { InternalApiError, InternalTransportError, MAX_BODY_BYTES } from './wire.js'
