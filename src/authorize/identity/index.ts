/** The identity statement Portcullis sends upstream (Pomerium docs: Identity headers): see docs/identity-headers.md. */
export { loadSigningKeys, deriveSigningKeyPem, deriveSigningPrivateKey, thumbprintKid, SigningKeyError, DERIVED_KEY_INFO } from '../../shared/signing-keys.js'
export type { SigningAlg, SigningKey, SigningKeys, PublicJwk } from '../../shared/signing-keys.js'
export { createAssertionMinter, parseIssuerFormat, ASSERTION_LIFETIME_S, STANDARD_CLAIMS } from './assertion.js'
export type { Assertion, AssertionInput, AssertionMinter, AssertionOptions, AssertionRouteOptions, IdentitySession, IssuerFormat } from './assertion.js'
export { claimHeaderName, claimHeaderValues, normaliseClaimHeaders, claimHeaderProblem, wireValue } from '../../config/claim-headers.js'
export { compileTemplate, isTemplate, certificateSubject, TEMPLATE_VARIABLES } from '../../config/header-templates.js'
export type { CompiledTemplate, TemplateContext, TemplateResult, TemplateVariable } from '../../config/header-templates.js'
export {
  createIdentityHeaders,
  jwksResponse,
  identityOptionsFromConfig,
  identitySession,
  identityConfigIssues,
  ASSERTION_HEADER,
  JWKS_PATH,
} from './identity-headers.js'
export type { IdentityHeaders, IdentityHeadersInput, IdentityHeadersOptions, IdentityHeadersResult, IdentityConfigIssue, JwksResponse } from './identity-headers.js'
