import assert from 'node:assert/strict'
import { test } from 'node:test'
import { errors, loadYaml } from './test-helpers.js'

const base = `
authenticate_service_url: https://authn.example.com
idp_provider: oidc
idp_provider_url: https://idp.example.com
idp_client_id: portcullis
`

test('a complete sign-in configuration loads', () => {
  const { config, issues } = loadYaml(base)
  assert.ok(config, JSON.stringify(issues))
})

test('each missing or unusable sign-in setting is named with what is expected', () => {
  const cases: [string, string, RegExp][] = [
    [base.replace('idp_client_id: portcullis\n', ''), 'idp_client_id', /required for idp_provider oidc/],
    [base.replace('idp_provider_url: https://idp.example.com\n', ''), 'idp_provider_url', /required for idp_provider oidc/],
    [base.replace('https://idp.example.com', 'http://idp.example.com'), 'idp_provider_url', /plain HTTP/],
    [base.replace('authenticate_service_url: https://authn.example.com\n', ''), 'authenticate_service_url', /hosted authenticate service is not supported/],
    [base.replace('https://authn.example.com', 'http://authn.example.com'), 'authenticate_service_url', /https/],
  ]
  for (const [yaml, key, message] of cases) {
    const found = errors(loadYaml(yaml).issues).find((e) => e.path === key)
    assert.ok(found, `${key}: ${JSON.stringify(errors(loadYaml(yaml).issues))}`)
    assert.match(found.message, message)
  }
})

test('plain http is accepted for providers and authenticate on this machine', () => {
  const yaml = base.replace('https://idp.example.com', 'http://127.0.0.1:8081').replace('https://authn.example.com', 'http://authn.localhost:8080')
  assert.deepEqual(errors(loadYaml(yaml).issues), [])
})

test('a named provider with a default URL needs none', () => {
  const yaml = base.replace('idp_provider: oidc', 'idp_provider: google').replace('idp_provider_url: https://idp.example.com\n', '')
  assert.deepEqual(errors(loadYaml(yaml).issues), [])
})
