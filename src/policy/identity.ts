/**
 * Canonical forms of user ids and email addresses for the `user`, `email` and `domain` criteria
 * (hostile-input cases: identity and claims).
 *
 * Both sides are compared case-folded. Operands written by the operator are NFKC-normalised and
 * lower-cased. Values from the identity provider are *refused* (the criterion is false) rather
 * than repaired when they could be a look-alike of another identity:
 *
 * - an email must be plain printable ASCII: ASCII is NFKC-invariant and every compatibility
 *   character (full-width `＠` and letters, ligatures, superscripts) lies outside it, so an address
 *   that NFKC would fold onto a different ASCII address is refused instead of folded. Cyrillic
 *   and other look-alike letters are refused the same way;
 * - exactly one `@`, a non-empty local part and domain, no quotes, spaces, RFC 5322 specials
 *   (`a@evil.com@company.com`, `"a@company.com"@evil.com` never reach a comparison), no leading,
 *   trailing or doubled dots (`company.com.` is not `company.com`);
 * - a user id must be non-empty, without leading/trailing whitespace or control characters, and
 *   unchanged by NFKC; its case is folded.
 *
 * A one-entry memo per kind keeps the per-request cost to one string comparison when the same
 * session is evaluated repeatedly (several criteria, several routes).
 */

/** Printable ASCII except space and the RFC 5322 specials that need quoting. */
const EMAIL_CHARS = /^[!#-'*+\-./0-9=?A-Z^-~@]+$/
const HAS_CONTROL_OR_EDGE_SPACE = /^\s|\s$|\p{Cc}/u
const ASCII = /^[\x20-\x7e]*$/

/** The canonical form of an operand the operator wrote: NFKC, lower case. */
export function canonicalOperand(s: string): string {
  return s.normalize('NFKC').toLowerCase()
}

let lastRawEmail: string | undefined
let lastEmail: string | undefined
let lastDomain: string | undefined

/** The canonical (lower-case) form of an email from the identity provider, or undefined when refused. */
export function canonicalEmail(raw: string): string | undefined {
  if (raw !== lastRawEmail) remember(raw)
  return lastEmail
}

/** The domain (after `@`) of the canonical form of an email, or undefined when the email is refused. */
export function canonicalEmailDomain(raw: string): string | undefined {
  if (raw !== lastRawEmail) remember(raw)
  return lastDomain
}

function remember(raw: string): void {
  const email = checkEmail(raw)
  lastRawEmail = raw
  lastEmail = email
  lastDomain = email === undefined ? undefined : email.slice(email.indexOf('@') + 1)
}

function checkEmail(raw: string): string | undefined {
  if (raw.length === 0 || raw.length > 320 || !EMAIL_CHARS.test(raw)) return undefined
  const at = raw.indexOf('@')
  if (at <= 0 || at === raw.length - 1 || raw.indexOf('@', at + 1) >= 0) return undefined
  if (raw.startsWith('.') || raw.endsWith('.') || raw.includes('..') || raw[at - 1] === '.' || raw[at + 1] === '.') return undefined
  return raw.toLowerCase()
}

let lastRawUser: string | undefined
let lastUser: string | undefined

/** The canonical (case-folded) form of a user id from the identity provider, or undefined when refused. */
export function canonicalUserId(raw: string): string | undefined {
  if (raw === lastRawUser) return lastUser
  const user = checkUserId(raw)
  lastRawUser = raw
  lastUser = user
  return user
}

function checkUserId(raw: string): string | undefined {
  if (raw.length === 0 || HAS_CONTROL_OR_EDGE_SPACE.test(raw)) return undefined
  if (!ASCII.test(raw) && raw.normalize('NFKC') !== raw) return undefined
  return raw.toLowerCase()
}
