import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig } from './load.js'
import { formatIssue } from './format.js'
import { errors, loadYaml, tempDir } from './test-helpers.js'

const b64 = (text: string) => Buffer.from(text).toString('base64')

test('env vars are upper-cased keys and win over the file', () => {
  const { config } = loadYaml('address: ":8443"\nlog_level: debug\ninsecure_server: false\n', {
    ADDRESS: '127.0.0.1:9000',
    INSECURE_SERVER: 'true',
    TIMEOUT_READ: '1m30s',
    WORKERS: '4',
    address: ':1', // lower-case names are not env overrides
  })
  assert.deepEqual(config?.address, { host: '127.0.0.1', port: 9000 })
  assert.equal(config?.insecureServer, true)
  assert.equal(config?.logLevel, 'debug')
  assert.equal(config?.timeoutReadMs, 90_000)
  assert.equal(config?.workers, 4)
})

test('empty env vars are ignored', () => {
  const { config } = loadYaml('address: ":8443"\n', { ADDRESS: '' })
  assert.equal(config?.address.port, 8443)
})

test('comma lists and nested keys', () => {
  const { config } = loadConfig({
    env: {
      IDP_SCOPES: 'openid, email,profile',
      ALLOW_UPGRADES: 'WebSocket,custom',
      DOWNSTREAM_MTLS_ENFORCEMENT: 'reject_connection',
      DOWNSTREAM_MTLS_MAX_VERIFY_DEPTH: '3',
    },
  })
  assert.deepEqual(config?.raw['idp_scopes'], ['openid', 'email', 'profile'])
  assert.deepEqual(config?.allowUpgrades, ['websocket', 'custom'])
  assert.deepEqual(config?.raw['downstream_mtls'], { enforcement: 'reject_connection', max_verify_depth: 3 })
})

test('nested env vars merge into the file object', () => {
  const { config } = loadYaml('downstream_mtls:\n  enforcement: policy\n  max_verify_depth: 2\n', { DOWNSTREAM_MTLS_MAX_VERIFY_DEPTH: '5' })
  assert.deepEqual(config?.raw['downstream_mtls'], { enforcement: 'policy', max_verify_depth: 5 })
})

test('POLICY is base64 YAML or JSON of routes; its errors name POLICY', () => {
  const yamlRoutes = '- from: https://a.example.com\n  to: http://a\n'
  assert.equal(loadConfig({ env: { POLICY: b64(yamlRoutes) } }).config?.routes[0]?.from.host, 'a.example.com')
  const jsonRoutes = JSON.stringify([{ from: 'https://b.example.com', to: ['http://b'] }])
  assert.equal(loadConfig({ env: { POLICY: b64(jsonRoutes) } }).config?.routes[0]?.from.host, 'b.example.com')

  const bad = loadConfig({ env: { POLICY: b64(JSON.stringify([{ from: 'ftp://x', to: 'http://b' }])) } })
  assert.equal(bad.config, undefined)
  const issue = errors(bad.issues)[0]
  assert.equal(issue?.path, 'POLICY[0].from')
  assert.equal(issue?.file, undefined)
  assert.equal(issue?.line, undefined)
  assert.ok(issue)
  assert.match(formatIssue(issue), /^environment: error: POLICY\[0\]\.from \(`ftp:\/\/x`\)/)

  assert.equal(errors(loadConfig({ env: { POLICY: b64('from: not-a-list') } }).issues)[0]?.path, 'POLICY')
})

test('ROUTES is base64 YAML or JSON of routes, like POLICY; it replaces the file routes; POLICY routes come first', () => {
  const fromEnv = loadYaml('routes:\n  - from: https://file.example.com\n    to: http://f\n', {
    ROUTES: b64('- from: https://r.example.com\n  to: http://r\n'),
    POLICY: b64(JSON.stringify([{ from: 'https://p.example.com', to: 'http://p' }])),
  }).config
  assert.deepEqual(fromEnv?.routes.map((r) => r.from.host), ['p.example.com', 'r.example.com'])

  const bad = loadConfig({ env: { ROUTES: b64(JSON.stringify([{ from: 'https://x.example.com' }])) } })
  assert.equal(bad.config, undefined)
  assert.equal(errors(bad.issues)[0]?.path, 'ROUTES[0]')
  assert.equal(errors(loadConfig({ env: { ROUTES: b64('not: a list') } }).issues)[0]?.path, 'ROUTES')
})

test('HEADERS sets set_response_headers (replacing the defaults, as in Pomerium), as JSON or K:V pairs', () => {
  const kv = loadConfig({ env: { HEADERS: 'X-A:1,X-B: two', INSECURE_SERVER: 'true' } }).config
  assert.deepEqual(kv?.setResponseHeaders, { 'X-A': '1', 'X-B': 'two' })
  const json = loadConfig({ env: { HEADERS: '{"X-Frame-Options":"DENY"}' } }).config
  assert.deepEqual(json?.setResponseHeaders, { 'X-Frame-Options': 'DENY' })
  const disabled = loadConfig({ env: { HEADERS: '{"disable":"true","X-C":"3"}' } }).config
  assert.deepEqual(disabled?.setResponseHeaders, {})
  assert.equal(errors(loadConfig({ env: { HEADERS: 'garbage' } }).issues)[0]?.path, 'HEADERS')
})

test('*_FILE env vars read the value from a file; a file wins over inline; env inline beats a file key in the config', () => {
  const tmp = tempDir()
  try {
    const secretA = b64('a'.repeat(32))
    const secretB = b64('b'.repeat(32))
    const secretFile = tmp.write('secret', `${secretA}\n`)
    const viaEnvFile = loadConfig({ env: { SHARED_SECRET_FILE: secretFile, SHARED_SECRET: secretB } }).config
    assert.equal(viaEnvFile?.raw['shared_secret'], secretA)
    assert.ok(viaEnvFile?.source.referencedFiles.includes(secretFile))

    const cfg = tmp.write('config.yaml', `shared_secret_file: secret\n`)
    assert.equal(loadConfig({ file: cfg, env: {} }).config?.raw['shared_secret'], secretA)
    assert.equal(loadConfig({ file: cfg, env: { SHARED_SECRET: secretB } }).config?.raw['shared_secret'], secretB)

    const missing = loadConfig({ env: { COOKIE_SECRET_FILE: `${tmp.dir}/nope` } })
    assert.equal(errors(missing.issues)[0]?.path, 'COOKIE_SECRET_FILE')
  } finally {
    tmp.cleanup()
  }
})

test('invalid env values are reported under the env var name', () => {
  const { config, issues } = loadConfig({ env: { TIMEOUT_IDLE: 'forever', INSECURE_SERVER: 'yes', DOWNSTREAM_MTLS_ENFORCEMENT: 'strict' } })
  assert.equal(config, undefined)
  assert.deepEqual(errors(issues).map((i) => i.path).sort(), ['DOWNSTREAM_MTLS_ENFORCEMENT', 'INSECURE_SERVER', 'TIMEOUT_IDLE'])
})
