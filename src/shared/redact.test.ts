import assert from 'node:assert/strict'
import { test } from 'node:test'
import { redactCredentialParams } from './redact.js'

test('credential parameters are redacted wherever they sit; everything else is kept', () => {
  assert.equal(redactCredentialParams('a=1&b=2'), 'a=1&b=2')
  assert.equal(redactCredentialParams('pomerium_session=eyJ.x.y'), 'pomerium_session=REDACTED')
  assert.equal(redactCredentialParams('?a=1&pomerium_jwt=eyJ.a.b&c=3'), '?a=1&pomerium_jwt=REDACTED&c=3')
  assert.equal(redactCredentialParams('x=1;POMERIUM_SESSION=abc'), 'x=1;POMERIUM_SESSION=REDACTED')
  assert.equal(redactCredentialParams('https://app.example.com/p?pomerium_session_encrypted=zzz#f'), 'https://app.example.com/p?pomerium_session_encrypted=REDACTED#f')
  assert.equal(redactCredentialParams('not_pomerium_session=1'), 'not_pomerium_session=1')
  assert.equal(redactCredentialParams('/.pomerium/webauthn?pomerium_enrollment_token=abc.def'), '/.pomerium/webauthn?pomerium_enrollment_token=REDACTED')
})
