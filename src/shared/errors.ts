/**
 * Errors with stable codes. Handlers throw a `PortcullisError`; one boundary per listener maps
 * the code to a status and renders the page (HTML or JSON) with the request id.
 */

export const ERROR_CODES = {
  ERR_ROUTE_NOT_FOUND: { status: 404, title: 'Not Found' },
  ERR_ACCESS_DENIED: { status: 403, title: 'Forbidden' },
  ERR_BAD_REQUEST: { status: 400, title: 'Bad Request' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, title: 'Method Not Allowed' },
  ERR_HEADERS_TOO_LARGE: { status: 431, title: 'Request Header Fields Too Large' },
  ERR_UPSTREAM_UNREACHABLE: { status: 503, title: 'Service Unavailable' },
  ERR_UPSTREAM_BAD_RESPONSE: { status: 502, title: 'Bad Gateway' },
  ERR_UPSTREAM_TIMEOUT: { status: 504, title: 'Gateway Timeout' },
  ERR_NO_HEALTHY_UPSTREAM: { status: 503, title: 'Service Unavailable' },
  ERR_REQUEST_TIMEOUT: { status: 408, title: 'Request Timeout' },
  ERR_INTERNAL: { status: 500, title: 'Internal Server Error' },
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export class PortcullisError extends Error {
  readonly code: ErrorCode
  readonly status: number
  /** Text safe to show to the person who made the request. */
  readonly publicMessage: string

  constructor(code: ErrorCode, publicMessage: string, options?: { cause?: unknown }) {
    super(publicMessage, options)
    this.name = 'PortcullisError'
    this.code = code
    this.status = ERROR_CODES[code].status
    this.publicMessage = publicMessage
  }
}

export function isPortcullisError(err: unknown): err is PortcullisError {
  return err instanceof PortcullisError
}
