/**
 * `${pomerium.*}` templates in a route's `set_request_headers` (Pomerium docs: Headers).
 *
 * Syntax, as Pomerium's `internal/headertemplate` parses it:
 * - `$$` is a literal `$`;
 * - `${a.b}` and `${a["b"]}` (spaces and tabs allowed inside the braces, `\` escapes in quoted
 *   names) and the brace-less `$a.b` are references; identifiers are `[A-Za-z0-9_-]+`;
 * - a `$` followed by anything else is a literal `$`.
 *
 * Variables (the list Pomerium's `headers_evaluator_evaluation.go` resolves):
 * - `pomerium.jwt`: the assertion for this request (also when `pass_identity_headers` is off);
 * - `pomerium.id_token`, `pomerium.access_token`: the session's IdP tokens ("" without);
 * - `pomerium.client_cert_fingerprint`: SHA-256 of the client certificate's DER, hex;
 * - `pomerium.client_cert_subject`: its subject DN, RFC 4514 style in certificate order;
 * - `pomerium.request.headers["Name"]` / `$pomerium.request.headers.Name`: a request header
 *   (case-insensitive; repeated headers joined with `,`; "" when absent).
 *
 * Differences from Pomerium, on purpose: an unknown variable (Pomerium renders "") and a `$`
 * that starts but does not complete a reference (Pomerium keeps it as text) are config errors,
 * since both are almost always typos; `client_cert_subject` is "" unless the certificate is
 * valid (an unverified certificate's subject is whatever the client wrote); and a rendered
 * value containing CR, LF, NUL or another control character is refused (header not sent).
 */
import { X509Certificate } from 'node:crypto'
import type { ClientCertificateInfo } from '../shared/x509.js'
import { wireSafe, wireValue } from './claim-headers.js'

/** What a template may read while rendering one request. */
export interface TemplateContext {
  /** The request's assertion; called only when the template uses `pomerium.jwt`. */
  readonly jwt: () => string
  readonly idToken?: string | undefined
  readonly accessToken?: string | undefined
  readonly clientCertificate?: ClientCertificateInfo | undefined
  /** Request headers, lower-case names. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
}

export type TemplateVariable =
  | { readonly kind: 'jwt' | 'id_token' | 'access_token' | 'client_cert_fingerprint' | 'client_cert_subject' }
  | { readonly kind: 'request_header'; readonly name: string }

export interface CompiledTemplate {
  /** The header value, or undefined when it must not be sent (control characters). */
  render(ctx: TemplateContext): string | undefined
  readonly variables: readonly TemplateVariable[]
  readonly usesJwt: boolean
}

export type TemplateResult = CompiledTemplate | { readonly error: string }

export const TEMPLATE_VARIABLES = [
  '${pomerium.jwt}',
  '${pomerium.id_token}',
  '${pomerium.access_token}',
  '${pomerium.client_cert_fingerprint}',
  '${pomerium.client_cert_subject}',
  '${pomerium.request.headers["Name"]}',
] as const

const SIMPLE: Readonly<Record<string, TemplateVariable['kind']>> = {
  jwt: 'jwt',
  id_token: 'id_token',
  access_token: 'access_token',
  client_cert_fingerprint: 'client_cert_fingerprint',
  client_cert_subject: 'client_cert_subject',
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** Whether a `set_request_headers` value is a template (has a reference, or a malformed one). */
export function isTemplate(text: string): boolean {
  if (!text.includes('$')) return false
  const r = compileTemplate(text)
  return 'error' in r || r.variables.length > 0
}

/** Compiles a header template once; `{error}` is a config error text for the caller to report. */
export function compileTemplate(text: string): TemplateResult {
  const parsed = parse(text)
  if ('error' in parsed) return parsed
  const parts: (string | TemplateVariable)[] = []
  const variables: TemplateVariable[] = []
  let literal = ''
  for (const part of parsed.parts) {
    if (typeof part === 'string') {
      literal += part
      continue
    }
    const variable = resolve(part)
    if (typeof variable === 'string') return { error: variable }
    if (literal !== '') parts.push(literal)
    literal = ''
    parts.push(variable)
    variables.push(variable)
  }
  if (literal !== '') parts.push(literal)
  // Literal text is wire bytes from here on.
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]
    if (typeof p !== 'string') continue
    const wire = wireValue(p)
    if (wire === undefined) return { error: 'header value contains a control character (CR, LF, NUL...)' }
    parts[i] = wire
  }
  const frozen = Object.freeze(parts)
  return {
    variables: Object.freeze(variables),
    usesJwt: variables.some((v) => v.kind === 'jwt'),
    render(ctx: TemplateContext): string | undefined {
      let out = ''
      for (const p of frozen) {
        if (typeof p === 'string') {
          out += p
          continue
        }
        const v = valueOf(p, ctx)
        if (v === undefined) return undefined
        out += v
      }
      return wireSafe(out)
    },
  }
}

function valueOf(v: TemplateVariable, ctx: TemplateContext): string | undefined {
  switch (v.kind) {
    case 'jwt':
      return ctx.jwt()
    case 'id_token':
      return wireValue(ctx.idToken ?? '')
    case 'access_token':
      return wireValue(ctx.accessToken ?? '')
    case 'client_cert_fingerprint': {
      const c = ctx.clientCertificate
      return c?.presented ? c.fingerprintSha256 : ''
    }
    case 'client_cert_subject': {
      const c = ctx.clientCertificate
      return c?.presented && c.valid ? wireValue(certificateSubject(c)) : ''
    }
    case 'request_header': {
      const h = ctx.headers[v.name]
      if (h === undefined) return ''
      // Request header values are already wire bytes (Node reads them as latin1).
      return wireSafe(Array.isArray(h) ? h.join(',') : h)
    }
  }
}

type Ref = readonly string[]

function resolve(ref: Ref): TemplateVariable | string {
  const shown = `\${${ref.join('.')}}`
  if (ref[0] === 'pomerium') {
    if (ref.length === 2) {
      const kind = SIMPLE[ref[1] as string]
      if (kind !== undefined) return { kind } as TemplateVariable
    }
    if (ref.length === 4 && ref[1] === 'request' && ref[2] === 'headers') {
      const name = ref[3] as string
      if (!TOKEN.test(name)) return `template variable ${shown}: "${name}" is not a header name`
      return { kind: 'request_header', name: name.toLowerCase() }
    }
  }
  if (ref[0] === 'secret') return `template variable ${shown}: secrets are not supported by Portcullis`
  return `unknown template variable ${shown} (known: ${TEMPLATE_VARIABLES.join(', ')}; write $$ for a literal $)`
}

// ---- parser (grammar of Pomerium's internal/headertemplate) ----

type Parsed = { parts: (string | Ref)[] } | { error: string }

const isIdentChar = (c: string | undefined): boolean => c !== undefined && /[0-9A-Za-z_-]/.test(c)
const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t'

function parse(src: string): Parsed {
  const parts: (string | Ref)[] = []
  let literal = ''
  let i = 0
  while (i < src.length) {
    const c = src[i] as string
    if (c === '$') {
      const next = src[i + 1]
      if (next === '$') {
        literal += '$'
        i += 2
        continue
      }
      const v = next === '{' ? complexVariable(src, i + 2) : isIdentChar(next) ? simpleExpression(src, i + 1) : undefined
      if (v !== undefined) {
        if (literal !== '') parts.push(literal)
        literal = ''
        parts.push(v.ref)
        i = v.end
        continue
      }
      if (next === '{' || isIdentChar(next)) {
        return { error: `malformed template reference at "${src.slice(i, i + 24)}" (write $$ for a literal $)` }
      }
    }
    literal += c
    i++
  }
  if (literal !== '') parts.push(literal)
  return { parts }
}

interface Span {
  readonly ref: Ref
  readonly end: number
}

function identifier(src: string, i: number): Span | undefined {
  let j = i
  while (isIdentChar(src[j])) j++
  return j === i ? undefined : { ref: [src.slice(i, j)], end: j }
}

function skipSpaces(src: string, i: number): number {
  while (isSpace(src[i])) i++
  return i
}

/** `${` _ identifier _ ( '.' _ identifier _ / '[' _ string _ ']' _ )* `}` — `i` is after `${`. */
function complexVariable(src: string, i: number): Span | undefined {
  const first = identifier(src, skipSpaces(src, i))
  if (!first) return undefined
  const ref = [...first.ref]
  let j = first.end
  for (;;) {
    j = skipSpaces(src, j)
    if (src[j] === '.') {
      const id = identifier(src, skipSpaces(src, j + 1))
      if (!id) return undefined
      ref.push(...id.ref)
      j = id.end
    } else if (src[j] === '[') {
      const s = quoted(src, skipSpaces(src, j + 1))
      if (!s) return undefined
      j = skipSpaces(src, s.end)
      if (src[j] !== ']') return undefined
      ref.push(...s.ref)
      j++
    } else {
      break
    }
  }
  if (src[j] !== '}') return undefined
  return { ref, end: j + 1 }
}

/** identifier ( '.' identifier )* */
function simpleExpression(src: string, i: number): Span | undefined {
  const ref: string[] = []
  let j = i
  for (;;) {
    const id = identifier(src, j)
    if (!id) return undefined
    ref.push(...id.ref)
    j = id.end
    if (src[j] !== '.') break
    j++
  }
  return { ref, end: j }
}

/** `"` ( `\` any / not `"` )* `"` */
function quoted(src: string, i: number): Span | undefined {
  if (src[i] !== '"') return undefined
  let out = ''
  let j = i + 1
  while (j < src.length) {
    const c = src[j] as string
    if (c === '"') return { ref: [out], end: j + 1 }
    if (c === '\\') {
      if (j + 1 >= src.length) return undefined
      out += src[j + 1] as string
      j += 2
      continue
    }
    out += c
    j++
  }
  return undefined
}

// ---- client certificate subject ----

const subjects = new Map<string, string>()
const SUBJECT_CACHE = 1000
const GO_NAMES: Readonly<Record<string, string>> = { serialNumber: 'SERIALNUMBER', street: 'STREET', postalCode: 'POSTALCODE' }

/**
 * The leaf's subject as Pomerium's `cryptutil.FormatDistinguishedName` writes it: attributes in
 * certificate order, RFC 4514 escaping, `,` between RDNs and `+` inside one.
 */
export function certificateSubject(cert: ClientCertificateInfo): string {
  const cached = subjects.get(cert.fingerprintSha256)
  if (cached !== undefined) return cached
  let subject: string
  try {
    subject = new X509Certificate(cert.leafPem).subject
      .split('\n')
      .filter((line) => line !== '')
      .map((rdn) =>
        rdn
          .split(' + ')
          .map((ava) => {
            const eq = ava.indexOf('=')
            const type = ava.slice(0, eq)
            return `${GO_NAMES[type] ?? type}${ava.slice(eq)}`
          })
          .join('+'),
      )
      .join(',')
  } catch {
    subject = ''
  }
  if (subjects.size >= SUBJECT_CACHE) subjects.clear()
  subjects.set(cert.fingerprintSha256, subject)
  return subject
}
