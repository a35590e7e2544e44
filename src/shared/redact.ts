/**
 * Portcullis' own credentials can travel in a query string: a session handle as
 * `?pomerium_session=` (programmatic clients), `?pomerium_jwt=` after programmatic login, and the
 * sealed session of a callback, and a device enrollment link's token. Logs keep the query of routed requests (and the Referer), so these
 * values are replaced before a line is written.
 */
const CREDENTIAL_PARAM = /(^|[?&;])(pomerium_session|pomerium_jwt|pomerium_session_encrypted|pomerium_enrollment_token)=[^&;#]*/gi

/** `query` (or a URL) with the values of Portcullis' credential parameters replaced by `REDACTED`. */
export function redactCredentialParams(text: string): string {
  // Cheap test first: almost no query carries one.
  if (!/pomerium_(session|jwt|enrollment_token)/i.test(text)) return text
  return text.replace(CREDENTIAL_PARAM, '$1$2=REDACTED')
}
