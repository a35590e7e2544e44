/**
 * Load-time checks of the identity-header settings (`jwt_claims_headers`, `jwt_issuer_format`,
 * `${pomerium.*}` templates in `set_request_headers`): see docs/identity-headers.md. Authorize
 * renders these settings per request; config loading refuses the ones it could not render.
 */
import { claimHeaderProblem, isSettableHeaderName } from './claim-headers.js'
import { compileTemplate, isTemplate } from './header-templates.js'
import type { RouteConfig } from './types.js'

/** The `iss` claim's form: the bare host, or an `https://host/` URI. */
export type IssuerFormat = 'hostOnly' | 'uri'

export interface IdentityConfigIssue {
  /** Key path, e.g. `routes[2].set_request_headers.X-Token`. */
  readonly path: string
  readonly message: string
}

/** Config errors of the identity settings (templates, claim header names, issuer format). */
export function identityConfigIssues(config: { readonly raw: Readonly<Record<string, unknown>>; readonly routes: readonly RouteConfig[] }): IdentityConfigIssue[] {
  const issues: IdentityConfigIssue[] = []
  const claimHeaders = (config.raw['jwt_claims_headers'] as Record<string, string> | undefined) ?? {}
  for (const [header, claim] of Object.entries(claimHeaders)) {
    const problem = claimHeaderProblem(header, claim)
    if (problem) issues.push({ path: `jwt_claims_headers.${header}`, message: problem })
  }
  const checkFormat = (path: string, value: unknown): void => {
    if (value !== undefined && parseIssuerFormat(value) === undefined) issues.push({ path, message: 'expected hostOnly or uri' })
  }
  checkFormat('jwt_issuer_format', config.raw['jwt_issuer_format'])
  config.routes.forEach((route, i) => {
    for (const [name, value] of Object.entries(route.setRequestHeaders)) {
      if (!isTemplate(value)) continue
      const compiled = compileTemplate(value)
      if ('error' in compiled) issues.push({ path: `routes[${i}].set_request_headers.${name}`, message: compiled.error })
      else if (!isSettableHeaderName(name.toLowerCase())) issues.push({ path: `routes[${i}].set_request_headers.${name}`, message: `${name} cannot be set` })
    }
  })
  return issues
}

/** `jwt_issuer_format` as written (`hostOnly`, `uri`; also Pomerium's enum spellings), else undefined. */
export function parseIssuerFormat(value: unknown): IssuerFormat | undefined {
  if (typeof value !== 'string') return undefined
  switch (value.trim().toLowerCase()) {
    case 'uri':
    case 'issueruri':
    case 'issuer_uri':
    case 'jwt_issuer_format_uri':
      return 'uri'
    case 'hostonly':
    case 'host':
    case 'issuerhostonly':
    case 'issuer_host_only':
    case 'jwt_issuer_format_host_only':
      return 'hostOnly'
    default:
      return undefined
  }
}
