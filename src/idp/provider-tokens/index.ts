/**
 * Tokens an identity provider issued, verified by us: the bearer tokens of
 * `bearer_token_format: idp_identity_token | idp_access_token` (Pomerium docs: Non-interactive credentials), and, through the
 * shared {@link ProviderKeySource} and {@link verifyProviderJwt}, back-channel logout tokens
 * (`src/authenticate/backchannel-logout.ts`).
 *
 * The rules (hostile-input case: tokens / jwt; protocol / availability; operator view in docs/provider-tokens.md):
 * - Only asymmetric signatures from the provider's own JWKS (`jwks_uri` of its discovery
 *   document). `none`, a missing `alg`, every `HS*` (an HMAC "signed" with the provider's public
 *   key is the classic confusion attack) and anything outside RS/PS/ES/EdDSA are refused before any
 *   key is looked at. Headers that name or carry their own key (`jku`, `jwk`, `x5u`, `x5c`) or ask
 *   for extensions (`crit`, `b64`) are refused, as is a path-like `kid`.
 * - `iss` must equal the configured issuer exactly; `aud` must contain the expected audience;
 *   `exp` and `iat` must be present; a 60 s clock skew is allowed on `exp`, `nbf` and `iat`.
 * - The JWKS is fetched lazily through the injected fetch (so tests and proxies see every request)
 *   and re-fetched when a token names a `kid` it lacks, at most once per 30 s whatever the request
 *   rate, and when the cached copy is older than an hour (so a key the provider withdrew stops
 *   being trusted).
 * - Provider endpoints must be HTTPS, except on loopback hosts.
 *
 * jose does the signature arithmetic (`compactVerify`); the policy around it (which header, which
 * key, which claims) is written out in verify.ts so each refusal has its own code. The parts:
 * errors.ts (codes), documents.ts (reading provider documents), key-source.ts (discovery and
 * JWKS), verify.ts (one JWS against a policy), cache.ts (results), verifier.ts (bearer tokens).
 */
export { TokenCache } from './cache.js'
export { isProviderTokenError, ProviderTokenError } from './errors.js'
export type { ProviderTokenErrorCode } from './errors.js'
export { createProviderKeySource } from './key-source.js'
export type { ProviderKeySource, ProviderKeySourceOptions } from './key-source.js'
export { createProviderTokenVerifier, OPAQUE_ACCESS_TOKEN_TTL_MS } from './verifier.js'
export type { ProviderTokenVerifier, ProviderTokenVerifierOptions, VerifiedProviderToken } from './verifier.js'
export { isJwtAccessToken, verifyProviderJwt } from './verify.js'
