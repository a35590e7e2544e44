import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadConfig } from './load.js'
import { parseDuration } from './duration.js'
import { formatIssue } from './format.js'
import { DEFAULT_ACCESS_LOG_FIELDS } from './schema.js'
import { errors, loadYaml, tempDir, testPem, warnings } from './test-helpers.js'

const HSTS = 'max-age=31536000; includeSubDomains; preload'

test('defaults with no file and an empty environment', () => {
  const { config, issues } = loadConfig({ env: {} })
  assert.deepEqual(issues, [])
  assert.ok(config)
  assert.deepEqual(config.address, { host: undefined, port: 443 })
  assert.deepEqual(config.services, ['all'])
  assert.equal(config.insecureServer, false)
  assert.equal(config.httpRedirectAddr, undefined)
  assert.deepEqual(config.certificates, [])
  assert.equal(config.timeoutReadMs, 30_000)
  assert.equal(config.timeoutWriteMs, 0)
  assert.equal(config.timeoutIdleMs, 300_000)
  assert.equal(config.defaultUpstreamTimeoutMs, 30_000)
  assert.equal(config.headersWithUnderscoresAction, 'reject')
  assert.equal(config.pathWithEscapedSlashesAction, 'reject')
  assert.equal(config.mergeSlashes, true)
  assert.equal(config.normalizePath, true)
  assert.equal(config.skipXffAppend, false)
  assert.equal(config.xffNumTrustedHops, 0)
  assert.equal(config.passIdentityHeaders, false)
  assert.equal(config.logLevel, 'info')
  assert.deepEqual(config.accessLogFields, DEFAULT_ACCESS_LOG_FIELDS)
  assert.equal(config.workers, 0, 'one worker per CPU core')
  assert.deepEqual(config.routes, [])
  assert.deepEqual(config.setResponseHeaders, {
    'X-Frame-Options': 'SAMEORIGIN',
    'X-XSS-Protection': '1; mode=block',
    'Strict-Transport-Security': HSTS,
  })
  assert.equal(config.raw['cookie_name'], '_pomerium')
  assert.equal(config.raw['cookie_expire'], 14 * 3_600_000)
  assert.equal(config.raw['cookie_http_only'], true)
  assert.equal(config.raw['grpc_client_timeout'], 10_000)
  assert.equal(config.raw['authenticate_service_url'], 'https://authenticate.pomerium.app')
  assert.deepEqual(config.raw['programmatic_redirect_domain_whitelist'], ['localhost'])
  assert.equal(config.raw['databroker_storage_type'], 'memory')
  assert.equal((config.raw['runtime_flags'] as Record<string, boolean>)['pomerium_jwt_endpoint'], false)
})

test('the returned config is deep-frozen', () => {
  const { config } = loadYaml('routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n')
  assert.ok(config)
  assert.ok(Object.isFrozen(config))
  assert.ok(Object.isFrozen(config.routes))
  assert.ok(Object.isFrozen(config.routes[0]))
  assert.ok(Object.isFrozen(config.routes[0]?.to))
  assert.ok(Object.isFrozen(config.setResponseHeaders))
  assert.throws(() => {
    ;(config.address as { port: number }).port = 1
  }, TypeError)
})

test('reports every problem at once with file, line, column and key path', () => {
  const yaml = [
    'address: "nope"', // 1
    'timeout_read: 30x', // 2
    'log_level: loud', // 3
    'routes:', // 4
    '  - from: https://ok.example.com', // 5
    '    to: http://127.0.0.1:8080', // 6
    '  - from: ftp://x', // 7
    '    to: http://127.0.0.1:8080', // 8
    '  - from: https://c.example.com', // 9
    '    to: http://c', // 10
    '    regex: "(["', // 11
    '  - from: https://d.example.com', // 12
    '    to: gopher://d', // 13
    '    allow_websockets: maybe', // 14
  ].join('\n')
  const { config, issues, file } = loadYaml(yaml)
  assert.equal(config, undefined)
  const found = errors(issues).map((i) => [i.path, i.line, i.column])
  assert.deepEqual(found, [
    ['address', 1, 10],
    ['timeout_read', 2, 15],
    ['log_level', 3, 12],
    ['routes[1].from', 7, 11],
    ['routes[2].regex', 11, 12],
    ['routes[3].to', 13, 9],
    ['routes[3].allow_websockets', 14, 23],
  ])
  for (const i of issues) assert.equal(i.file, file)
  const from = issues.find((i) => i.path === 'routes[1].from')
  assert.ok(from)
  assert.equal(from.value, 'ftp://x')
  assert.match(formatIssue(from), /config\.yaml:7:11: error: routes\[1\]\.from \(`ftp:\/\/x`\): expected an https:\/\/ URL with a host and no path/)
})

test('YAML syntax errors and duplicate keys are reported with positions', () => {
  const { config, issues } = loadYaml('address: ":443"\naddress: ":8443"\n')
  assert.equal(config, undefined)
  assert.equal(issues.length, 1)
  assert.equal(issues[0]?.line, 2)
  assert.match(issues[0]?.message ?? '', /unique/)
  const bad = loadYaml('routes: [\n')
  assert.equal(bad.config, undefined)
  assert.ok(errors(bad.issues).length > 0)
})

test('a missing config file is an error, not an exception', () => {
  const { config, issues } = loadConfig({ file: '/nonexistent/portcullis.yaml', env: {} })
  assert.equal(config, undefined)
  assert.match(issues[0]?.message ?? '', /ENOENT/)
})

test('JSON config files load too', () => {
  const { config, issues } = loadYaml('{"address": ":8080", "insecure_server": true, "routes": [{"from": "https://a.example.com", "to": "http://127.0.0.1:1"}]}')
  assert.deepEqual(errors(issues), [])
  assert.equal(config?.address.port, 8080)
  assert.equal(config?.routes.length, 1)
})

test('unknown keys are warnings with a suggestion; the config still loads', () => {
  const { config, issues } = loadYaml('cookie_nmae: x\nroutes:\n  - from: https://a.example.com\n    to: http://b\n    prefx: /a\n')
  assert.ok(config)
  const w = warnings(issues).filter((i) => i.kind === 'unknown_key')
  assert.deepEqual(w.map((i) => [i.path, i.line, i.column]), [
    ['cookie_nmae', 1, 1],
    ['routes[0].prefx', 5, 5],
  ])
  assert.match(w[0]?.message ?? '', /did you mean cookie_name\?/)
  assert.match(w[1]?.message ?? '', /did you mean prefix\?/)
})

test("ssh_host_key_files (Pomerium's spelling) and ssh_host_keys_files are both known keys", () => {
  const { config, issues } = loadYaml('ssh_host_key_files: [/a]\nssh_host_keys_files: [/b]\n')
  assert.deepEqual(config?.raw['ssh_host_key_files'], ['/a'])
  assert.deepEqual(warnings(issues).filter((i) => /unknown setting/.test(i.message)), [])
})

test('a mistyped allow_public_unauthenticated_access is an unknown key that suggests the intended one', () => {
  const { issues } = loadYaml('routes:\n  - from: https://a.example.com\n    to: http://b\n    allow_public_unauthenticated_acess: true\n')
  const unknown = issues.filter((i) => i.kind === 'unknown_key')
  assert.deepEqual(unknown.map((i) => i.path), ['routes[0].allow_public_unauthenticated_acess'])
  assert.match(unknown[0]?.message ?? '', /did you mean allow_public_unauthenticated_access\?/)
})

test('a misspelt key is reported before the errors it causes', () => {
  const yaml = ['idp_provider: oidc', 'idp_provider_url: https://idp.example.com', 'idp_client_id: x', 'authenticate_servce_url: https://authn.example.com', ''].join('\n')
  const { config, issues } = loadYaml(yaml)
  assert.equal(config, undefined)
  assert.equal(issues[0]?.path, 'authenticate_servce_url')
  assert.match(issues[0]?.message ?? '', /did you mean authenticate_service_url\?/)
  assert.equal(issues[1]?.path, 'authenticate_service_url')
  assert.equal(issues[1]?.value, undefined, 'the default is not quoted as if written')
})

test('removed keys are errors that name their replacement', () => {
  const yaml = [
    'client_ca: abc',
    'tracing_provider: jaeger',
    'tracing_jaeger_collector_endpoint: http://x',
    'policy_file: routes.yaml',
    'idp_service_account: x',
    'routes:',
    '  - from: https://a.example.com',
    '    to: http://b',
    '    allowed_groups: [admins]',
    '    set_authorization_header: pass_through',
  ].join('\n')
  const { config, issues } = loadYaml(yaml)
  assert.equal(config, undefined)
  const byPath = new Map(errors(issues).map((i) => [i.path, i.message]))
  assert.match(byPath.get('client_ca') ?? '', /downstream_mtls\.ca/)
  assert.match(byPath.get('tracing_provider') ?? '', /otel_/)
  assert.match(byPath.get('tracing_jaeger_collector_endpoint') ?? '', /otel_/)
  assert.match(byPath.get('policy_file') ?? '', /routes/)
  assert.ok(byPath.has('idp_service_account'))
  assert.match(byPath.get('routes[0].allowed_groups') ?? '', /groups.*policy/)
  assert.ok(byPath.has('routes[0].set_authorization_header'))
})

test('durations are Go duration strings converted to milliseconds', () => {
  const cases: [string, number | undefined][] = [
    ['30s', 30_000],
    ['1m30s', 90_000],
    ['14h', 50_400_000],
    ['500ms', 500],
    ['0', 0],
    ['1.5s', 1500],
    ['2h45m', 9_900_000],
    ['1500us', 2],
    ['', undefined],
    ['10', undefined],
    ['-5s', undefined],
    ['5 s', undefined],
    ['1d', undefined],
  ]
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text)
  const { config } = loadYaml('timeout_read: 1m\ntimeout_idle: 0\ndefault_upstream_timeout: 45s\n')
  assert.equal(config?.timeoutReadMs, 60_000)
  assert.equal(config?.timeoutIdleMs, 0)
  assert.equal(config?.defaultUpstreamTimeoutMs, 45_000)
})

test('global settings: address forms, services, log level, actions, workers', () => {
  const ok = (yaml: string) => {
    const r = loadYaml(yaml)
    assert.deepEqual(errors(r.issues), [], yaml)
    assert.ok(r.config)
    return r.config
  }
  assert.deepEqual(ok('address: 127.0.0.1:8443').address, { host: '127.0.0.1', port: 8443 })
  assert.deepEqual(ok('address: "[::1]:443"').address, { host: '::1', port: 443 })
  assert.deepEqual(ok('address: ":0"').address, { host: undefined, port: 0 })
  assert.deepEqual(ok('http_redirect_addr: ":80"').httpRedirectAddr, { host: undefined, port: 80 })
  assert.deepEqual(ok('services: proxy,cache').services, ['proxy', 'databroker'])
  assert.equal(ok('log_level: WARN').logLevel, 'warn')
  assert.equal(ok('headers_with_underscores_action: drop').headersWithUnderscoresAction, 'drop')
  assert.equal(ok('path_with_escaped_slashes_action: unescape-and-forward').pathWithEscapedSlashesAction, 'unescape-and-forward')
  assert.equal(ok('workers: 0').workers, 0)
  assert.equal(ok('merge_slashes: false').mergeSlashes, false)
  assert.equal(ok('xff_num_trusted_hops: 2').xffNumTrustedHops, 2)
  for (const bad of ['address: ":99999"', 'services: proxy,frontend', 'workers: -1', 'headers_with_underscores_action: ignore', 'cookie_same_site: sometimes']) {
    assert.equal(loadYaml(bad).config, undefined, bad)
  }
})

test('secrets: base64 of 32 bytes; metrics_basic_auth must contain a colon; values are redacted', () => {
  const good = Buffer.alloc(32, 7).toString('base64')
  assert.ok(loadYaml(`shared_secret: ${good}\ncookie_secret: ${good}\n`).config)
  const { issues } = loadYaml(`shared_secret: ${Buffer.alloc(16).toString('base64')}\ncookie_secret: "a b"\nmetrics_basic_auth: ${Buffer.from('nocolon').toString('base64')}\n`)
  const byPath = new Map(errors(issues).map((i) => [i.path, i]))
  assert.match(byPath.get('shared_secret')?.message ?? '', /32/)
  assert.equal(byPath.get('shared_secret')?.value, '[redacted]')
  assert.match(byPath.get('cookie_secret')?.message ?? '', /whitespace/)
  assert.match(byPath.get('metrics_basic_auth')?.message ?? '', /user:password/)
  assert.ok(loadYaml(`metrics_basic_auth: ${Buffer.from('u:p').toString('base64')}\n`).config)
})

test('access_log_fields: unknown names are warned about and dropped; headers.<Name> is allowed', () => {
  const { config, issues } = loadYaml('access_log_fields: [method, path, headers.X-Request-Start, bogus]\n')
  assert.deepEqual(config?.accessLogFields, ['method', 'path', 'headers.X-Request-Start'])
  assert.deepEqual(warnings(issues).map((i) => [i.path, i.value]), [['access_log_fields[3]', 'bogus']])
})

test('security headers: defaults (HSTS only with TLS) when set_response_headers is unset', () => {
  const insecure = loadYaml('insecure_server: true\n').config
  assert.deepEqual(insecure?.setResponseHeaders, { 'X-Frame-Options': 'SAMEORIGIN', 'X-XSS-Protection': '1; mode=block' })
  const unsetByEmptyKey = loadYaml('set_response_headers:\n').config
  assert.equal(unsetByEmptyKey?.setResponseHeaders['Strict-Transport-Security'], HSTS)
})

test('set_response_headers replaces the defaults, as in Pomerium: only what it lists, {} for none, disable for none', () => {
  const only = loadYaml('set_response_headers:\n  X-Frame-Options: DENY\n').config
  assert.deepEqual(only?.setResponseHeaders, { 'X-Frame-Options': 'DENY' })
  assert.deepEqual(loadYaml('set_response_headers: {}\n').config?.setResponseHeaders, {})
  const disabled = loadYaml('set_response_headers:\n  disable: true\n  X-Only: yes\n').config
  assert.deepEqual(disabled?.setResponseHeaders, {})
  // The key's presence disables, whatever its value (Pomerium); a false value is warned about.
  const disabledFalse = loadYaml('set_response_headers:\n  disable: false\n')
  assert.deepEqual(disabledFalse.config?.setResponseHeaders, {})
  assert.deepEqual(warnings(disabledFalse.issues).map((i) => i.path), ['set_response_headers.disable'])
})

test('route set_response_headers merge over the global ones; a route disable key sends none at all', () => {
  const route = (headers: string): string => ['  - from: https://a.example.com', '    to: http://a', `    set_response_headers: ${headers}`].join('\n')
  const defaults = loadYaml(['routes:', route('{X-Route: r, x-frame-options: DENY}')].join('\n')).config
  assert.deepEqual(defaults?.routes[0]?.setResponseHeaders, {
    'X-XSS-Protection': '1; mode=block',
    'Strict-Transport-Security': HSTS,
    'X-Route': 'r',
    'x-frame-options': 'DENY',
  })
  const globalSet = loadYaml(['set_response_headers: {X-Global: g}', 'routes:', route('{X-Route: r}')].join('\n')).config
  assert.deepEqual(globalSet?.routes[0]?.setResponseHeaders, { 'X-Global': 'g', 'X-Route': 'r' })
  const globalDisabled = loadYaml(['set_response_headers: {disable: true}', 'routes:', route('{X-Route: r}')].join('\n')).config
  assert.deepEqual(globalDisabled?.routes[0]?.setResponseHeaders, { 'X-Route': 'r' })
  const routeDisabled = loadYaml(['routes:', route('{disable: true, X-Route: only}')].join('\n')).config
  assert.deepEqual(routeDisabled?.routes[0]?.setResponseHeaders, {})
})

test('certificates: files, inline base64, certificates list; all referenced files recorded', () => {
  const tmp = tempDir()
  try {
    const certA = tmp.write('a.crt', testPem('a.cert.pem'))
    const keyA = tmp.write('a.key', testPem('a.key.pem'))
    tmp.write('b.crt', testPem('b.cert.pem'))
    tmp.write('b.key', testPem('b.key.pem'))
    const file = tmp.write(
      'config.yaml',
      [
        'certificate_file: a.crt',
        'certificate_key_file: a.key',
        'certificates:',
        '  - {cert: b.crt, key: b.key}',
        `  - cert: ${Buffer.from(testPem('a.cert.pem')).toString('base64')}`,
        `    key: ${Buffer.from(testPem('a.key.pem')).toString('base64')}`,
      ].join('\n'),
    )
    const { config, issues } = loadConfig({ file, env: {} })
    assert.deepEqual(errors(issues), [])
    assert.equal(config?.certificates.length, 3)
    assert.equal(config?.certificates[0]?.cert, testPem('a.cert.pem'))
    assert.equal(config?.certificates[1]?.key, testPem('b.key.pem'))
    assert.deepEqual(config?.source.referencedFiles, [certA, keyA, `${tmp.dir}/b.crt`, `${tmp.dir}/b.key`])
    assert.equal(config?.source.file, file)

    const mismatch = tmp.write('bad.yaml', 'certificate_file: a.crt\ncertificate_key_file: b.key\ncertificates:\n  - {cert: missing.crt, key: a.key}\n')
    const bad = loadConfig({ file: mismatch, env: {} })
    assert.equal(bad.config, undefined)
    const byPath = new Map(errors(bad.issues).map((i) => [i.path, i.message]))
    assert.match(byPath.get('certificate_key_file') ?? '', /does not match/)
    assert.match(byPath.get('certificates[0].cert') ?? '', /ENOENT/)

    const inline = loadYaml(`certificate: ${Buffer.from(testPem('a.cert.pem')).toString('base64')}\n`)
    assert.match(errors(inline.issues)[0]?.message ?? '', /certificate_key .* required/)
  } finally {
    tmp.cleanup()
  }
})

test('a TLS server without certificates loads (the proxy generates a fallback)', () => {
  const { config, issues } = loadYaml('address: ":8443"\n')
  assert.deepEqual(issues, [])
  assert.deepEqual(config?.certificates, [])
})

test('a full Pomerium-style config loads without errors or warnings', () => {
  const secret = Buffer.alloc(32, 9).toString('base64')
  const yaml = `
authenticate_service_url: https://authenticate.localhost.pomerium.io
idp_provider: oidc
idp_provider_url: https://idp.example.com/realms/x
idp_client_id: portcullis
idp_client_secret: s3cr3t
idp_scopes: [openid, profile, email, offline_access]
idp_request_params: {prompt: login}
shared_secret: ${secret}
cookie_secret: ${secret}
cookie_name: _pc
cookie_expire: 8h
cookie_same_site: Lax
signing_key: ${Buffer.from(testPem('a.key.pem')).toString('base64')}
jwt_claims_headers: {X-Email: email, X-Groups: groups}
jwt_issuer_format: uri
databroker_storage_type: postgres
databroker_storage_connection_string: postgres://u:p@db/pomerium
grpc_address: ":5443"
grpc_insecure: true
metrics_address: ":9902"
health_check_addr: 127.0.0.1:28080
otel_traces_exporter: otlp
otel_exporter_otlp_endpoint: http://collector:4317
otel_traces_sampler_arg: 0.5
dns_lookup_family: V4_ONLY
runtime_flags: {pomerium_jwt_endpoint: true}
downstream_mtls:
  ca: ${Buffer.from(testPem('a.cert.pem')).toString('base64')}
  enforcement: policy
  match_subject_alt_names: [{dns: ".*\\\\.example\\\\.com"}]
circuit_breaker_thresholds: {max_connections: 100}
mcp_allowed_client_id_domains: [example.com]
x-anchors: &upstream http://127.0.0.1:8080
routes:
  - from: https://verify.localhost.pomerium.io
    to: *upstream
    name: Verify
    pass_identity_headers: true
    policy:
      - allow:
          or:
            - domain: {is: example.com}
            - groups: {has: admins}
  - from: https://mcp.localhost.pomerium.io
    to: http://127.0.0.1:9000
    mcp: {server: {max_request_bytes: 8192}}
    allow_any_authenticated_user: true
  - from: https://redirect.localhost.pomerium.io
    redirect: {https_redirect: true, response_code: 308}
  - from: https://health.localhost.pomerium.io
    response: {status: 200, body: ok}
    allow_public_unauthenticated_access: true
`
  const { config, issues } = loadYaml(yaml)
  // The YAML anchor key is unknown to Pomerium too; the other warning lists what is accepted but inactive.
  assert.deepEqual(issues.map((i) => [i.severity, i.path, i.kind]), [
    ['warning', 'x-anchors', 'unknown_key'],
    ['warning', '', 'not_in_effect'],
  ])
  assert.match(issues[1]?.message ?? '', /not in effect yet.*: mcp_allowed_client_id_domains, runtime_flags\.pomerium_jwt_endpoint, routes\[1\]\.mcp$/)
  assert.ok(config)
  assert.equal(config.routes.length, 4)
  assert.equal(config.routes[0]?.to[0]?.url.port, '8080')
  assert.equal(config.routes[1]?.timeoutMs, 0, 'MCP server routes have no route timeout')
  assert.equal(config.routes[2]?.redirect?.responseCode, 308)
  assert.equal(config.raw['cookie_same_site'], 'lax')
  assert.deepEqual(config.raw['jwt_claims_headers'], { 'X-Email': 'email', 'X-Groups': 'groups' })
  assert.equal((config.raw['runtime_flags'] as Record<string, boolean>)['pomerium_jwt_endpoint'], true)
  assert.equal((config.raw['downstream_mtls'] as Record<string, unknown>)['ca'], testPem('a.cert.pem'))
})
