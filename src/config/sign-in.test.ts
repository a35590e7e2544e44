import assert from 'node:assert/strict'
import { test } from 'node:test'
import { errors, loadYaml, warnings } from './test-helpers.js'

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
    [base.replace('authenticate_service_url: https://authn.example.com\n', ''), 'authenticate_service_url', /required with idp_provider: set it to this Portcullis' own authenticate URL.*when it is not set, Pomerium uses its hosted authenticate service/],
    [base.replace('https://authn.example.com', 'https://authenticate.pomerium.app'), 'authenticate_service_url', /hosted authenticate service is not supported/],
    [base.replace('https://authn.example.com', 'http://authn.example.com'), 'authenticate_service_url', /https.*insecure_server: true/],
    [base.replace('https://authn.example.com', 'http://localhost.:8443'), 'authenticate_service_url', /https.*insecure_server: true/],
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

test('an unwritten authenticate_service_url is reported as not set, not as a value the user wrote', () => {
  const found = errors(loadYaml(base.replace('authenticate_service_url: https://authn.example.com\n', '')).issues).find((e) => e.path === 'authenticate_service_url')
  assert.equal(found?.value, undefined)
})

test('insecure_server: true with an http:// authenticate_service_url is accepted with one warning about Secure cookies', () => {
  const { config, issues } = loadYaml(`insecure_server: true\n${base.replace('https://authn.example.com', 'http://authn.example.com')}`)
  assert.ok(config, JSON.stringify(errors(issues)))
  const w = warnings(issues).filter((i) => i.path === 'authenticate_service_url')
  assert.equal(w.length, 1)
  assert.match(w[0]?.message ?? '', /insecure_server.*Secure/)
})

test('a plain-http idp_provider_url off loopback is accepted with a warning, as Pomerium accepts it', () => {
  const { config, issues } = loadYaml(base.replace('https://idp.example.com', 'http://keycloak.internal:8080/realms/corp'))
  assert.ok(config, JSON.stringify(errors(issues)))
  assert.deepEqual(warnings(issues).map((i) => [i.path, i.value]), [['idp_provider_url', 'http://keycloak.internal:8080/realms/corp']])
  assert.match(warnings(issues)[0]?.message ?? '', /plain http.*unencrypted/)
})

const protectedRoutes = `
routes:
  - from: https://public.example.com
    to: http://127.0.0.1:1
    allow_public_unauthenticated_access: true
  - from: https://app.example.com
    to: http://127.0.0.1:1
    allowed_domains: [example.com]
  - from: https://admin.example.com
    to: http://127.0.0.1:1
    allow_any_authenticated_user: true
  - from: https://old.example.com
    redirect: {host_redirect: app.example.com}
`

test('protected routes with no sign-in configured: one warning with the route count and what to add', () => {
  for (const auth of ['', 'authenticate_service_url: https://authenticate.pomerium.app\n']) {
    const { config, issues } = loadYaml(auth + protectedRoutes)
    assert.ok(config)
    const w = warnings(issues).filter((i) => i.kind === 'no_sign_in')
    assert.equal(w.length, 1)
    assert.equal(w[0]?.path, 'idp_provider')
    assert.match(w[0]?.message ?? '', /2 of 4 routes .* will answer 403 to everyone/)
    assert.match(w[0]?.message ?? '', /idp_provider: builtin with builtin_idp_users_file/)
    assert.match(w[0]?.message ?? '', /authenticate_service_url/)
  }
  const hosted = warnings(loadYaml(`idp_provider: hosted\n${protectedRoutes}`).issues).filter((i) => i.kind === 'no_sign_in')
  assert.match(hosted[0]?.message ?? '', /^hosted \(Pomerium's hosted authenticate, which Portcullis does not support\), so nobody can sign in: 2 of 4/)
  // Only public routes, or sign-in configured: nothing to say.
  assert.deepEqual(warnings(loadYaml('routes:\n  - from: https://p.example.com\n    to: http://a\n    allow_public_unauthenticated_access: true\n').issues), [])
  assert.deepEqual(warnings(loadYaml(base + protectedRoutes).issues), [])
})

test('no idp_provider but a built-in users file: the built-in provider is used, and that is said', () => {
  const { config, issues } = loadYaml(`authenticate_service_url: https://authn.example.com\nbuiltin_idp_users_file: users.yaml\n${protectedRoutes}`)
  assert.ok(config, JSON.stringify(errors(issues)))
  assert.equal(config.raw['idp_provider'], 'builtin')
  assert.deepEqual(warnings(issues).map((i) => i.path), ['idp_provider'])
  assert.match(warnings(issues)[0]?.message ?? '', /using the built-in provider/)
  // Without its own authenticate URL, that names what to set.
  const hosted = loadYaml(`builtin_idp_users_file: users.yaml\n${protectedRoutes}`)
  assert.equal(hosted.config, undefined)
  assert.match(errors(hosted.issues)[0]?.message ?? '', /required with idp_provider: set it to this Portcullis' own authenticate URL/)
  // An explicit provider is never replaced.
  assert.equal(loadYaml(`${base}builtin_idp_users_file: users.yaml\n`).config?.raw['idp_provider'], 'oidc')
})
