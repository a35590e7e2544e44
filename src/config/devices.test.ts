import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfig } from './load.js'
import { loadYaml, tempDir, testPem } from './test-helpers.js'

const errors = (yaml: string): string[] => loadYaml(yaml).issues.filter((i) => i.severity === 'error').map((i) => `${i.path}: ${i.message}`)

describe('device_types and device_approvers', () => {
  it('the built-in types are there without configuration; configured ones are added, and replace a built-in of the same id', () => {
    const plain = loadYaml('routes: []').config
    assert.deepEqual(plain?.deviceTypes.map((t) => t.id), ['any', 'enclave_only'])
    const { config } = loadYaml(
      [
        'device_types:',
        '  - id: laptop',
        '    name: Company laptop',
        '    authenticator_attachment: platform',
        '    user_verification: required',
        '    attestation_formats: [apple]',
        '    aaguids: [ADCE0002-35BC-C60A-648B-0B25F1F05503]',
        '    approval_required: true',
        '  - id: any',
        '    approval_required: true',
      ].join('\n'),
    )
    assert.deepEqual(config?.deviceTypes.map((t) => t.id), ['any', 'enclave_only', 'laptop'])
    const laptop = config?.deviceTypes.find((t) => t.id === 'laptop')
    assert.deepEqual(laptop, {
      id: 'laptop',
      name: 'Company laptop',
      attachment: 'platform',
      userVerification: 'required',
      attestationFormats: ['apple'],
      aaguids: ['adce0002-35bc-c60a-648b-0b25f1f05503'],
      approvalRequired: true,
    })
    assert.equal(config?.deviceTypes.find((t) => t.id === 'any')?.approvalRequired, true)
  })

  it('a bad device type names its key path', () => {
    assert.deepEqual(
      errors(
        [
          'device_types:',
          '  - id: Bad Name',
          '  - id: ok',
          '    authenticator_attachment: usb',
          '    user_verification: always',
          '    attestation_formats: [packed, x509]',
          '    aaguids: [nope]',
          '    approval_required: "yes"',
          '    colour: blue',
          '  - id: ok',
          '  - {name: no id}',
        ].join('\n'),
      ),
      [
        'device_types[0].id: expected a device type id: lower-case letters, digits, _ and -, at most 64',
        'device_types[1].authenticator_attachment: expected platform or cross-platform',
        'device_types[1].user_verification: expected required, preferred or discouraged',
        'device_types[1].attestation_formats[1]: unknown attestation format (expected one of packed, tpm, apple, android-key, android-safetynet, fido-u2f, none)',
        'device_types[1].aaguids[0]: expected an AAGUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)',
        'device_types[1].approval_required: expected true or false',
        'device_types[1].colour: unknown key (expected id, name, authenticator_attachment, user_verification, attestation_formats, aaguids, attestation_roots, approval_required)',
        'device_types[2].id: device type "ok" is defined twice',
        'device_types[3].id: expected a device type id: lower-case letters, digits, _ and -, at most 64',
      ],
    )
  })

  it('a route naming an unknown device type, and a bad device_approvers policy, are refused at load', () => {
    assert.deepEqual(
      errors(
        [
          'device_approvers:',
          '  allow: {or: [{emial: {is: a@b.c}}]}',
          'routes:',
          '  - from: https://a.example.com',
          '    to: http://127.0.0.1:1',
          '    policy: {allow: {and: [{device: {type: laptop}}]}}',
        ].join('\n'),
      ).map((e) => e.replace(/ \(did you mean.*$/, '')),
      ['device_approvers.allow.or[0].emial: unknown criterion "emial"', 'routes[0].policy.allow.and[0].device.type: unknown device type "laptop" (expected any, enclave_only; configure more in device_types)'],
    )
  })
})

describe('attestation_roots', () => {
  it('a type that names models or the packed, tpm or fido-u2f formats needs the makers’ roots', () => {
    const need = "required when a type names aaguids or the formats packed, tpm or fido-u2f: without the makers' root certificates an attestation statement proves nothing (or list only apple, android-key, android-safetynet, whose roots Portcullis carries)"
    assert.deepEqual(errors('device_types: [{id: a, aaguids: [adce0002-35bc-c60a-648b-0b25f1f05503]}]'), [`device_types[0].attestation_roots: ${need}`])
    assert.deepEqual(errors('device_types: [{id: a, attestation_formats: [tpm]}]'), [`device_types[0].attestation_roots: ${need}`])
    assert.deepEqual(errors('device_types: [{id: a, attestation_formats: [packed, none]}]'), [], 'none accepted: nothing to prove')
    assert.deepEqual(errors('device_types: [{id: a, attestation_formats: [apple, android-key]}]'), [], 'roots carried')
    assert.deepEqual(errors('device_types: [{id: a, attestation_roots: [missing.pem], attestation_formats: [tpm]}]').map((e) => e.replace(/ \/\S+missing\.pem/, ' missing.pem')), [
      'device_types[0].attestation_roots[0]: cannot read file missing.pem (ENOENT)',
    ])
  })

  it('reads the roots from PEM files next to the config', () => {
    const dir = tempDir()
    try {
      dir.write('maker.pem', testPem('a.cert.pem'))
      dir.write('empty.pem', 'nothing here')
      const file = dir.write('config.yaml', 'device_types: [{id: laptop, attestation_formats: [tpm], attestation_roots: [maker.pem]}]\n')
      const { config } = loadConfig({ file, env: {} })
      assert.equal(config?.deviceTypes.find((t) => t.id === 'laptop')?.attestationRoots?.length, 1)
      const bad = dir.write('bad.yaml', 'device_types: [{id: laptop, attestation_formats: [tpm], attestation_roots: [empty.pem]}]\n')
      const issues = loadConfig({ file: bad, env: {} }).issues.filter((i) => i.severity === 'error').map((i) => i.message)
      assert.equal(issues.length, 1)
      assert.match(issues[0] ?? '', /no PEM certificate in .*empty\.pem/)
    } finally {
      dir.cleanup()
    }
  })
})
