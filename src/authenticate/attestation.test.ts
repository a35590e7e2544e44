import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { describe, it } from 'node:test'
import { isoCBOR } from '@simplewebauthn/server/helpers'
import { makeCa, makeClientCertWithSans, makeIntermediateCa } from '../../test/fixtures/certs.js'
import { attestationChainProblem } from './attestation.js'

/** An attestation object (CBOR, as authenticators send it) whose statement carries `certs` as x5c. */
function attestationObject(certs: readonly string[]): string {
  const attStmt = new Map<string, unknown>([
    ['alg', -7],
    ['sig', new Uint8Array([1, 2, 3])],
  ])
  if (certs.length > 0) attStmt.set('x5c', certs.map((pem) => new Uint8Array(new X509Certificate(pem).raw)))
  const object = new Map<string, unknown>([
    ['fmt', 'packed'],
    ['attStmt', attStmt],
    ['authData', new Uint8Array(37)],
  ])
  return Buffer.from(isoCBOR.encode(object as never)).toString('base64url')
}

describe('attestation chains against attestation_roots', () => {
  const maker = makeCa('Authenticator Maker Root')
  const intermediate = makeIntermediateCa(maker, 'Authenticator Maker Batch CA')
  const leaf = makeClientCertWithSans(intermediate, 'Batch attestation 1')
  const stranger = makeCa('Self-made Root')
  const forged = makeClientCertWithSans(stranger, 'Batch attestation 1')

  it('accepts a chain that runs to a configured root', () => {
    assert.equal(attestationChainProblem(attestationObject([leaf.certPem, intermediate.certPem]), [maker.certPem]), undefined)
    assert.equal(attestationChainProblem(attestationObject([leaf.certPem, intermediate.certPem, maker.certPem]), [maker.certPem]), undefined, 'the root itself included')
  })

  it('refuses a self-made chain, a broken chain, self attestation and an expired chain', () => {
    assert.match(attestationChainProblem(attestationObject([forged.certPem]), [maker.certPem]) ?? '', /does not end in one of the type's attestation_roots/)
    assert.match(attestationChainProblem(attestationObject([leaf.certPem]), [maker.certPem]) ?? '', /does not end in/, 'the intermediate missing')
    assert.match(attestationChainProblem(attestationObject([leaf.certPem, stranger.certPem]), [maker.certPem]) ?? '', /do not form a chain/)
    assert.match(attestationChainProblem(attestationObject([]), [maker.certPem]) ?? '', /no certificate \(self attestation\)/)
    assert.match(attestationChainProblem(attestationObject([leaf.certPem, intermediate.certPem]), [maker.certPem], new Date('2200-01-01')) ?? '', /not valid now/)
    assert.match(attestationChainProblem('not-cbor', [maker.certPem]) ?? '', /cannot be read/)
  })
})
