import assert from 'node:assert/strict'
import { it } from 'node:test'
import { loadYaml } from './test-helpers.js'

const errors = (yaml: string): string[] => loadYaml(yaml).issues.filter((i) => i.severity === 'error').map((i) => `${i.path}: ${i.message}`)

it('forward_auth: an address and the trusted proxies, which are required', () => {
  const { config } = loadYaml('forward_auth:\n  address: 127.0.0.1:8090\n  trusted_proxies: [127.0.0.1/32, "::1", 10.0.0.0/8]\n')
  assert.deepEqual(config?.forwardAuth, { address: { host: '127.0.0.1', port: 8090 }, trustedProxies: ['127.0.0.1/32', '::1', '10.0.0.0/8'] })
  assert.equal(loadYaml('routes: []').config?.forwardAuth, undefined)
  assert.deepEqual(errors('forward_auth:\n  address: 127.0.0.1:8090\n'), [
    'forward_auth.trusted_proxies: required (or tls with client_ca_file): the addresses (CIDRs) of the proxies that call forward_auth; X-Forwarded-* headers from anyone else could name any host and path',
  ])
  assert.deepEqual(errors('forward_auth:\n  address: nowhere\n  trusted_proxies: [10.0.0.0/33]\n'), [
    'forward_auth.address: expected a listen address such as 127.0.0.1:8090',
    'forward_auth.trusted_proxies[0]: "10.0.0.0/33" has an invalid prefix length (0-32)',
  ])
})

it('device, forward-auth and ext_authz settings are in effect: no "not in effect" warning for them', () => {
  const { issues } = loadYaml(
    [
      'forward_auth: {address: 127.0.0.1:8090, trusted_proxies: [127.0.0.1/32]}',
      `ext_authz: {address: 127.0.0.1:9191, caller_token: ${'x'.repeat(40)}}`,
      'device_types: [{id: kiosk, approval_required: true}]',
      'device_approvers: {allow: {or: [{email: {is: a@b.c}}]}}',
      'routes: []',
    ].join('\n'),
  )
  assert.deepEqual(issues.map((i) => i.message), [])
})
