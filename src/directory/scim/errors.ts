import { CodedError } from '../../shared/errors.js'

/** A SCIM error answer (RFC 7644 §3.12): HTTP status, `scimType` and a detail for the person. */
export class ScimError extends CodedError {
  readonly code = 'ERR_SCIM_REQUEST'
  constructor(
    readonly status: number,
    readonly scimType: string | undefined,
    readonly detail: string,
  ) {
    super(detail)
    this.name = 'ScimError'
  }
}

export const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error'

export function errorBody(e: ScimError): Record<string, unknown> {
  return { schemas: [ERROR_SCHEMA], status: String(e.status), ...(e.scimType ? { scimType: e.scimType } : {}), detail: e.detail }
}
