/* eslint-disable no-restricted-imports -- tests check the contract with the authorize service's types and use node:test; the policy code itself imports neither */
/** The module's contract with its callers: certificate types, the public surface, reason descriptions. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { ClientCertificateInfo } from '../authorize/types.js'
import * as policy from './index.js'
import type { PolicyClientCertificate } from './index.js'

test('ClientCertificateInfo (authorize) is assignable to the certificate the policy reads', () => {
  const info: ClientCertificateInfo = {
    presented: true,
    valid: true,
    fingerprintSha256: '00'.repeat(32),
    spkiSha256: '',
    subject: '',
    issuer: '',
    serialNumber: '',
    sanDns: [],
    sanEmail: [],
    sanUri: [],
    sanIp: [],
    leafPem: '',
  }
  const asPolicy: PolicyClientCertificate = info
  assert.equal(asPolicy.presented, true)
})

test('the public surface', () => {
  assert.deepEqual(Object.keys(policy).sort(), ['cidrsContain', 'compileCidrs', 'compilePathComparison', 'compilePolicy', 'compileRoutePolicy', 'decide', 'describeDenial', 'describeReason'])
})

test('describeReason: plain English for known codes, unknown codes as they are', () => {
  assert.equal(policy.describeReason('email-unauthorized'), 'your email address is not one this route allows')
  assert.equal(policy.describeReason('user-unauthenticated'), 'you are not signed in')
  assert.equal(policy.describeReason('something-new'), 'something-new')
  assert.equal(policy.describeReason('toString'), 'toString')
  assert.equal(policy.describeReason('__proto__'), '__proto__')
})
