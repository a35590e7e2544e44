import assert from 'node:assert/strict'
import { test } from 'node:test'

import { providerIdFor } from '../config/providers.js'
import { loadYaml } from '../config/test-helpers.js'
import { browserScheme, buildAuthSettings } from './settings.js'

const yaml = `
authenticate_service_url: https://authn.example.com
idp_provider: oidc
idp_provider_url: https://idp.example.com
idp_client_id: portcullis
routes:
  - from: https://app.example.com
    to: http://127.0.0.1:9
    allow_public_unauthenticated_access: true
  - from: https://other.example.com
    to: http://127.0.0.1:9
    allow_public_unauthenticated_access: true
    idp_client_id: other-client
    idp_client_secret: other-secret
`

test('provider ids (idp_id) are providerIdFor of provider, URL and client id', () => {
  const { config, issues } = loadYaml(yaml)
  assert.ok(config, JSON.stringify(issues))
  const settings = buildAuthSettings(config)
  assert.equal(settings.defaultProvider?.id, providerIdFor({ provider: 'oidc', url: 'https://idp.example.com', clientId: 'portcullis' }))
  const [global, perRoute] = config.routes.map((r) => settings.providerFor(r))
  assert.equal(global?.id, settings.defaultProvider?.id)
  assert.equal(perRoute?.id, providerIdFor({ provider: 'oidc', url: 'https://idp.example.com', clientId: 'other-client' }))
  assert.deepEqual([...settings.providers.keys()].sort(), [global?.id, perRoute?.id].sort())
})

test('browser URLs keep plain http only for loopback hosts on an http listener', () => {
  for (const host of ['localhost', 'app.localhost', '127.0.0.1', '[::1]']) assert.equal(browserScheme(host, 'http'), 'http', host)
  for (const host of ['app.example.com', 'localhost.example.com', '127.0.0.1.nip.io']) assert.equal(browserScheme(host, 'http'), 'https', host)
  assert.equal(browserScheme('localhost', 'https'), 'https')
})
