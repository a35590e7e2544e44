import assert from 'node:assert/strict'
import { it } from 'node:test'
import { loadYaml } from './test-helpers.js'

const errors = (yaml: string): string[] => loadYaml(yaml).issues.filter((i) => i.severity === 'error').map((i) => `${i.path}: ${i.message}`)

it('ext_authz: an address and a caller token of at least 32 characters, which is required', () => {
  const token = 'x'.repeat(40)
  assert.deepEqual(loadYaml(`ext_authz:\n  address: 127.0.0.1:9191\n  caller_token: ${token}\n`).config?.extAuthz, { address: { host: '127.0.0.1', port: 9191 }, callerToken: token })
  assert.deepEqual(errors('ext_authz:\n  address: 127.0.0.1:9191\n'), [
    'ext_authz.caller_token_file: required (or tls with client_ca_file): the token Envoy sends (initial_metadata authorization: Bearer <token>); without it anyone who reaches the service could ask',
  ])
  assert.deepEqual(errors('ext_authz:\n  address: 127.0.0.1:9191\n  caller_token: short\n'), ['ext_authz.caller_token: the token must be at least 32 characters (head -c32 /dev/urandom | base64)'])
  assert.deepEqual(errors(`ext_authz:\n  address: nowhere\n  caller_token: ${token}\n`), ['ext_authz.address: expected a listen address such as 127.0.0.1:9191'])
})
