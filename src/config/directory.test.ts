/** Directory settings: what is accepted, and the key path and expectation of each refusal. */
import assert from 'node:assert/strict'
import { test } from 'node:test'

import { loadYaml } from './test-helpers.js'

const base = ['authenticate_service_url: https://authn.example.com', 'idp_client_id: c', 'idp_client_secret: s']

function problems(lines: string[]): Map<string, string> {
  const { issues } = loadYaml([...base, ...lines].join('\n'))
  return new Map(issues.filter((i) => i.severity === 'error').map((i) => [i.path, i.message]))
}

test('idp_service_account: JSON or base64 JSON, the fields each provider needs, never echoed', () => {
  const azure = JSON.stringify({ client_id: 'x', client_secret: 'topsecret', directory_id: 'tenant' })
  const ok = loadYaml([...base, 'idp_provider: azure', 'idp_provider_url: https://login.microsoftonline.com/tenant/v2.0', `idp_service_account: ${Buffer.from(azure).toString('base64')}`, 'idp_refresh_directory_interval: 2m'].join('\n'))
  assert.equal(ok.issues.filter((i) => i.severity === 'error').length, 0, JSON.stringify(ok.issues))
  assert.equal(ok.config?.directory.sync?.provider, 'azure')
  assert.equal(ok.config?.directory.sync?.intervalMs, 120_000)
  const missing = problems(['idp_provider: azure', 'idp_provider_url: https://login.microsoftonline.com/t/v2.0', `idp_service_account: '{"client_id":"x","client_secret":"topsecret"}'`])
  assert.match(missing.get('idp_service_account') ?? '', /needs directory_id/)
  assert.ok(![...missing.values()].some((m) => m.includes('topsecret')))
  assert.match(problems(['idp_provider: okta', 'idp_provider_url: https://acme.okta.com', 'idp_service_account: not json']).get('idp_service_account') ?? '', /JSON object/)
  assert.match(problems(['idp_provider: apple', `idp_service_account: '{"a":"b"}'`]).get('idp_service_account') ?? '', /not available for apple/)
  assert.match(problems(['idp_provider: oidc', 'idp_provider_url: https://kc.example.com/auth', `idp_service_account: '{"provider":"keycloak","client_id":"a","client_secret":"b"}'`]).get('idp_provider_url') ?? '', /realm URL/)
  assert.match(problems(['idp_provider: okta', 'idp_provider_url: https://acme.okta.com', `idp_service_account: '{"api_key":"k","api_url":"http://evil.example"}'`]).get('idp_service_account.api_url') ?? '', /https/)
  assert.match(problems(['idp_refresh_directory_interval: 30s']).get('idp_refresh_directory_interval') ?? '', /at least 1m/)
})

test('scim: an address and SHA-256 digests are required', () => {
  const digest = 'a'.repeat(64)
  const ok = loadYaml([...base, 'idp_provider: okta', 'idp_provider_url: https://acme.okta.com', 'scim:', '  address: 127.0.0.1:8097', `  bearer_token_sha256: [${digest}]`].join('\n'))
  assert.deepEqual(ok.config?.directory.scim, { address: '127.0.0.1:8097', tokenDigests: [digest] })
  const bad = problems(['scim:', '  address: nowhere', '  bearer_token_sha256: [not-a-digest]'])
  assert.match(bad.get('scim.address') ?? '', /listen address/)
  assert.match(bad.get('scim.bearer_token_sha256[0]') ?? '', /64 hex digits/)
  assert.match(problems(['scim:', '  address: 127.0.0.1:8097']).get('scim.bearer_token_sha256') ?? '', /required/)
})
