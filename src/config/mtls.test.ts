/** downstream_mtls checked at load time: problems are config errors at their key paths. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { makeCa, makeCrl } from '../../test/fixtures/certs.js'
import { errors, loadYaml } from './test-helpers.js'

const ca = makeCa('config mtls CA')
const b64 = (pem: string): string => Buffer.from(pem).toString('base64')
const BASE = 'authenticate_service_url: https://authenticate.example.com\nshared_secret: c2hhcmVkLXNlY3JldC1zaGFyZWQtc2VjcmV0LTMyYiE=\ncookie_secret: Y29va2llLXNlY3JldC1jb29raWUtc2VjcmV0LTMyYiE=\n'

test('downstream_mtls: a bad SAN pattern, an unknown SAN type and a CRL file without CRLs are errors at their key paths', () => {
  const { config, issues, file } = loadYaml(
    `${BASE}downstream_mtls:\n  ca: ${b64(ca.certPem)}\n  crl_file: ${ca.certFile}\n  match_subject_alt_names:\n    - dns: "("\n    - phone: ".*"\n`,
  )
  assert.equal(config, undefined)
  const byPath = new Map(errors(issues).map((i) => [i.path, i]))
  const san = byPath.get('downstream_mtls.match_subject_alt_names[0].dns')
  assert.ok(san, JSON.stringify(issues))
  assert.match(san.message, /invalid regular expression/)
  assert.equal(san.file, file)
  assert.equal(san.line, 8)
  assert.match(byPath.get('downstream_mtls.match_subject_alt_names[1]')?.message ?? '', /unknown SAN type "phone"/)
  assert.match(byPath.get('downstream_mtls.crl_file')?.message ?? '', /expected PEM "X509 CRL" blocks; found none/)
})

test('downstream_mtls: a CA without certificates is an error; valid settings load', () => {
  const bad = loadYaml(`${BASE}downstream_mtls:\n  ca: ${b64('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')}\n`)
  assert.equal(bad.config, undefined)
  assert.deepEqual(errors(bad.issues).map((i) => i.path), ['downstream_mtls.ca'])
  const good = loadYaml(`${BASE}downstream_mtls:\n  ca_file: ${ca.certFile}\n  crl: ${b64(makeCrl(ca).pem)}\n  match_subject_alt_names:\n    - dns: ".*"\n`)
  assert.deepEqual(errors(good.issues), [])
  assert.ok(good.config)
  // The policy the TLS layer uses is built once, at load (CRLs, anchors and SAN matchers included).
  assert.equal(good.config.mtlsEnforcement, 'policy_with_default_deny')
  assert.equal(good.config.downstreamMtls?.anchors.length, 1)
  assert.equal(good.config.downstreamMtls.crls.length, 1)
  assert.equal(good.config.downstreamMtls.sanMatchers.length, 1)
  assert.ok(Object.isFrozen(good.config.downstreamMtls))
})
