import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import type { ClientCertificateInfo } from '../authorize/types.js'
import { certificateSubject, compileTemplate, isTemplate } from './header-templates.js'
import type { CompiledTemplate, TemplateContext } from './header-templates.js'

const dir = mkdtempSync(join(tmpdir(), 'portcullis-templates-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function makeCert(subject: string): ClientCertificateInfo {
  const certFile = join(dir, `${createHash('sha256').update(subject).digest('hex')}.pem`)
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'),
    '-out', certFile, '-days', '1', '-subj', subject, '-multivalue-rdn',
  ], { stdio: 'ignore' })
  const leafPem = readFileSync(certFile, 'utf8')
  const x = new X509Certificate(leafPem)
  return {
    presented: true,
    valid: true,
    fingerprintSha256: createHash('sha256').update(x.raw).digest('hex'),
    spkiSha256: '',
    subject: x.subject,
    issuer: x.issuer,
    serialNumber: x.serialNumber,
    sanDns: [],
    sanEmail: [],
    sanUri: [],
    sanIp: [],
    leafPem,
  }
}

const cert = makeCert('/C=US/O=Acme, Inc./OU=Eng/CN=alice+serialNumber=42')

function compiled(text: string): CompiledTemplate {
  const r = compileTemplate(text)
  if ('error' in r) throw new Error(r.error)
  return r
}

const ctx = (o: Partial<TemplateContext> = {}): TemplateContext => ({
  jwt: () => 'JWT.TOKEN.SIG',
  idToken: 'ID.TOKEN',
  accessToken: 'ACCESS',
  clientCertificate: cert,
  headers: { 'x-access-token': 'abc', 'x-multi': ['1', '2'] },
  ...o,
})

test('templates: every variable of Pomerium renders', () => {
  assert.equal(compiled('Bearer ${pomerium.jwt}').render(ctx()), 'Bearer JWT.TOKEN.SIG')
  assert.equal(compiled('${pomerium.id_token}').render(ctx()), 'ID.TOKEN')
  assert.equal(compiled('${pomerium.access_token}').render(ctx()), 'ACCESS')
  assert.equal(compiled('${pomerium.client_cert_fingerprint}').render(ctx()), cert.fingerprintSha256)
  assert.match(cert.fingerprintSha256, /^[0-9a-f]{64}$/)
  assert.equal(compiled('${pomerium.client_cert_subject}').render(ctx()), 'C=US,O=Acme\\, Inc.,OU=Eng,SERIALNUMBER=42+CN=alice')
  assert.equal(compiled('${pomerium.request.headers["X-Access-Token"]}').render(ctx()), 'abc')
  assert.equal(compiled('$pomerium.request.headers.x-access-token').render(ctx()), 'abc')
  assert.equal(compiled('${pomerium.request.headers["X-Multi"]}').render(ctx()), '1,2')
  assert.equal(compiled('${pomerium.request.headers["X-Absent"]}').render(ctx()), '')
})

test('templates: syntax as Pomerium’s parser — $$, brace-less form, spaces inside braces, escapes, literal $', () => {
  assert.equal(compiled('x $$ y $$ z').render(ctx()), 'x $ y $ z')
  assert.equal(compiled('$$pomerium.jwt').render(ctx()), '$pomerium.jwt')
  assert.equal(compiled('before $pomerium.jwt after').render(ctx()), 'before JWT.TOKEN.SIG after')
  assert.equal(compiled('before ${   pomerium  .\tjwt  } after').render(ctx()), 'before JWT.TOKEN.SIG after')
  assert.equal(compiled('${pomerium["jwt"]}').render(ctx()), 'JWT.TOKEN.SIG')
  assert.equal(compiled('${pomerium.request.headers["X-Access-\\Token"]}').render(ctx()), 'abc')
  assert.equal(compiled('cost: 5 $ / $. / $').render(ctx()), 'cost: 5 $ / $. / $')
  assert.equal(compiled('a${pomerium.jwt}b${pomerium.access_token}c').render(ctx()), 'aJWT.TOKEN.SIGbACCESSc')
})

test('templates: absent values render empty (no session tokens, no client certificate)', () => {
  const c = ctx({ idToken: undefined, accessToken: undefined, clientCertificate: undefined })
  assert.equal(compiled('[${pomerium.id_token}|${pomerium.access_token}|${pomerium.client_cert_fingerprint}|${pomerium.client_cert_subject}]').render(c), '[|||]')
})

test('templates: an unverified client certificate gives its fingerprint (key possession is proven) but never its subject', () => {
  const c = ctx({ clientCertificate: { ...cert, valid: false, problem: 'unknown CA' } })
  assert.equal(compiled('${pomerium.client_cert_fingerprint}').render(c), cert.fingerprintSha256)
  assert.equal(compiled('${pomerium.client_cert_subject}').render(c), '')
  assert.equal(compiled('${pomerium.client_cert_fingerprint}').render(ctx({ clientCertificate: { ...cert, presented: false, valid: false } })), '')
})

test('templates: unknown variables and malformed references are config errors', () => {
  for (const [text, message] of [
    ['${pomerium.user}', /unknown template variable \$\{pomerium\.user\}.*\$\{pomerium\.jwt\}/],
    ['${foo}', /unknown template variable/],
    ['$HOME/x', /unknown template variable \$\{HOME\}/],
    ['cost $5', /unknown template variable \$\{5\}/],
    ['${Pomerium.JWT}', /unknown/],
    ['${pomerium.request.headers}', /unknown/],
    ['${pomerium.request.headers["a b"]}', /not a header name/],
    ['${secret.db}', /secrets are not supported/],
    ['${pomerium.jwt', /malformed/],
    ['${}', /malformed/],
    ['${x["', /malformed/],
    ['$pomerium.', /malformed/],
    ['ok\r\n${pomerium.jwt}', /control character/],
  ] as const) {
    const r = compileTemplate(text)
    assert.ok('error' in r, `${text} should be an error`)
    assert.match(r.error, message, text)
  }
})

test('templates: isTemplate tells templates from plain values', () => {
  assert.equal(isTemplate('plain'), false)
  assert.equal(isTemplate('a $$ b'), false)
  assert.equal(isTemplate('5 $ each'), false)
  assert.equal(isTemplate('${pomerium.jwt}'), true)
  assert.equal(isTemplate('$pomerium.jwt'), true)
  assert.equal(isTemplate('${unknown}'), true, 'errors are templates, so that they get reported')
})

test('hostile: a rendered value with CR, LF or NUL is refused (header dropped)', () => {
  const t = compiled('${pomerium.request.headers["X-In"]}')
  for (const bad of ['a\r\nx: y', 'a\nb', 'a\rb', 'a\0b']) assert.equal(t.render(ctx({ headers: { 'x-in': bad } })), undefined)
  assert.equal(compiled('${pomerium.access_token}').render(ctx({ accessToken: 'tok\r\nX: 1' })), undefined)
  assert.equal(compiled('${pomerium.jwt}').render(ctx({ jwt: () => 'a\nb' })), undefined)
})

test('templates: the assertion is minted only when used; literal text becomes UTF-8 bytes; request header bytes pass unchanged', () => {
  let calls = 0
  const c = ctx({ jwt: () => `J${++calls}` })
  assert.equal(compiled('no jwt ${pomerium.access_token}').render(c), 'no jwt ACCESS')
  assert.equal(calls, 0)
  assert.equal(compiled('${pomerium.jwt}').usesJwt, true)
  const out = compiled('José ${pomerium.request.headers["X-In"]}').render(ctx({ headers: { 'x-in': Buffer.from('李', 'utf8').toString('latin1') } }))
  assert.equal(Buffer.from(out ?? '', 'latin1').toString('utf8'), 'José 李')
})

test('client certificate subject: certificate order, RFC 4514 escaping, Go attribute names', () => {
  assert.equal(certificateSubject(cert), 'C=US,O=Acme\\, Inc.,OU=Eng,SERIALNUMBER=42+CN=alice')
  assert.equal(certificateSubject(makeCert('/CN=plain')), 'CN=plain')
})
