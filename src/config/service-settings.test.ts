/** The typed settings services read: defaults, values, and the checks made at load time. */
import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { test } from 'node:test'
import { loadConfig } from './load.js'
import { DEFAULT_OUTLIER_DETECTION } from './service-settings.js'
import { errors, loadYaml, testPem } from './test-helpers.js'

const b64 = (text: string): string => Buffer.from(text).toString('base64')
const ROUTE = 'routes:\n  - from: https://a.example.com\n    to: http://a\n'

/** Errors by key path; fails when the config loaded. */
function errorsByPath(yaml: string): Map<string, string> {
  const { config, issues } = loadYaml(yaml)
  assert.equal(config, undefined, 'expected the config to be refused')
  return new Map(errors(issues).map((i) => [i.path, i.message]))
}

test('service settings: Pomerium defaults with an empty config', () => {
  const { config } = loadConfig({ env: {} })
  assert.ok(config)
  assert.equal(config.authenticateServiceUrl, 'https://authenticate.pomerium.app')
  assert.deepEqual(config.cookie, { name: '_pomerium', domain: undefined, httpOnly: true, expireMs: 14 * 3_600_000, sameSite: undefined })
  assert.deepEqual(config.idp, { provider: undefined, providerUrl: undefined, clientId: undefined, clientSecret: undefined, scopes: undefined, requestParams: undefined })
  assert.deepEqual(config.builtinIdp, { usersFile: undefined, address: '127.0.0.1:8081', host: '127.0.0.1', port: 8081 })
  assert.deepEqual(config.programmaticRedirectDomainWhitelist, ['localhost'])
  assert.equal(config.jwtIssuerFormat, 'hostOnly')
  assert.deepEqual(config.jwtGroupsFilter, [])
  assert.deepEqual(config.jwtClaimsHeaders, {})
  assert.equal(config.mtlsEnforcement, undefined)
  assert.equal(config.downstreamMtls, undefined)
  assert.equal(config.runtimeFlags['routes_portal'], true)
  assert.deepEqual(config.databrokerServiceUrls, [])
  assert.equal(config.grpcInsecure, undefined)
  assert.equal(config.grpcClientTimeoutMs, 10_000)
  assert.deepEqual(config.storage, { type: 'memory', connectionString: undefined })
  assert.deepEqual(config.metrics, { address: undefined, basicAuth: undefined, certificate: undefined, certificateKey: undefined, clientCa: undefined })
  assert.equal(config.healthCheckAddr, '127.0.0.1:28080')
  assert.equal(config.tracing, undefined)
  assert.equal(config.signingKey, undefined)
  assert.equal(config.sharedSecret, undefined)
})

test('service settings: values as written; routes inherit bearer_token_format and audiences', () => {
  const { config, issues } = loadYaml(
    [
      'authenticate_service_url: https://auth.example.com',
      'cookie_name: _sess',
      'cookie_same_site: LAX',
      'cookie_http_only: false',
      'cookie_expire: 1h',
      'idp_provider: oidc',
      'idp_provider_url: https://idp.example.com',
      'idp_client_id: cid',
      'idp_client_secret: csecret',
      'idp_scopes: [openid, email]',
      'idp_request_params: {prompt: login}',
      'idp_access_token_allowed_audiences: [aud1]',
      'bearer_token_format: idp_access_token',
      'jwt_issuer_format: uri',
      'jwt_groups_filter: [eng]',
      'databroker_internal_service_url: http://db-internal:5443',
      'databroker_service_urls: [http://db1:5443, http://db2:5443]',
      'authorize_service_urls: [http://az1:5443, http://az2:5443]',
      'grpc_insecure: false',
      'grpc_client_timeout: 0',
      'databroker_storage_connection_string: postgres://u@db/p',
      'health_check_addr: 127.0.0.1:9999',
      'routes:',
      '  - from: https://a.example.com',
      '    to: http://a',
      '  - from: https://b.example.com',
      '    to: http://b',
      '    bearer_token_format: default',
      '    idp_access_token_allowed_audiences: [aud2]',
      '    idp_client_id: route-client',
      '    show_error_details: true',
      '    jwt_issuer_format: hostOnly',
      '    healthy_panic_threshold: 0',
      '    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 10s, max_ejection_time: 0.5}',
      '',
    ].join('\n'),
  )
  assert.deepEqual(errors(issues), [])
  assert.ok(config)
  assert.equal(config.authenticateServiceUrl, 'https://auth.example.com')
  assert.deepEqual(config.cookie, { name: '_sess', domain: undefined, httpOnly: false, expireMs: 3_600_000, sameSite: 'lax' })
  assert.deepEqual(config.idp, { provider: 'oidc', providerUrl: 'https://idp.example.com', clientId: 'cid', clientSecret: 'csecret', scopes: ['openid', 'email'], requestParams: { prompt: 'login' } })
  assert.equal(config.jwtIssuerFormat, 'uri')
  assert.deepEqual(config.jwtGroupsFilter, ['eng'])
  assert.deepEqual(config.databrokerServiceUrls, ['http://db-internal:5443'], 'the internal URL comes first')
  assert.deepEqual(config.authorizeServiceUrls, ['http://az1:5443', 'http://az2:5443'])
  assert.equal(config.grpcInsecure, false)
  assert.equal(config.grpcClientTimeoutMs, 0)
  assert.deepEqual(config.storage, { type: 'postgres', connectionString: 'postgres://u@db/p' })
  assert.equal(config.healthCheckAddr, '127.0.0.1:9999')
  const [a, b] = config.routes
  assert.ok(a && b)
  assert.equal(a.bearerTokenFormat, 'idp_access_token')
  assert.deepEqual(a.idpAccessTokenAllowedAudiences, ['aud1'])
  assert.equal(a.idpClientId, undefined)
  assert.equal(a.showErrorDetails, false)
  assert.equal(a.jwtIssuerFormat, undefined)
  assert.equal(a.healthyPanicThresholdPercent, 50)
  assert.deepEqual(a.outlierDetection, DEFAULT_OUTLIER_DETECTION)
  assert.equal(b.bearerTokenFormat, 'default')
  assert.deepEqual(b.idpAccessTokenAllowedAudiences, ['aud2'])
  assert.equal(b.idpClientId, 'route-client')
  assert.equal(b.showErrorDetails, true)
  assert.equal(b.jwtIssuerFormat, 'hostOnly')
  assert.equal(b.healthyPanicThresholdPercent, 0)
  assert.deepEqual(b.outlierDetection, { consecutiveFailures: 3, baseEjectionMs: 10_000, maxEjectionMs: 500, count5xx: true })
})

test('tracing: off by default and with none; otlp fills in the endpoint, headers, ratio and numbers', () => {
  assert.equal(loadYaml('otel_traces_exporter: none\n').config?.tracing, undefined)
  const grpc = loadYaml('otel_traces_exporter: otlp\notel_exporter_otlp_protocol: grpc\n').config?.tracing
  assert.equal(grpc?.endpoint, 'http://localhost:4317')
  const { config, issues } = loadYaml(
    [
      'otel_traces_exporter: OTLP',
      'otel_exporter_otlp_endpoint: http://collector:4318/',
      'otel_exporter_otlp_headers: [a=1, b=x%20y]',
      'otel_exporter_otlp_traces_headers: [b=2]',
      'otel_traces_sampler_arg: "7"',
      'otel_exporter_otlp_timeout: 500',
      'otel_bsp_schedule_delay: "100"',
      'otel_resource_attributes: [deployment.environment=test]',
      '',
    ].join('\n'),
  )
  assert.deepEqual(errors(issues), [])
  assert.deepEqual(config?.tracing, {
    protocol: 'http/protobuf',
    endpoint: 'http://collector:4318/v1/traces',
    headers: { a: '1', b: '2' },
    timeoutMs: 500,
    samplerRatio: 1,
    resourceAttributes: { 'deployment.environment': 'test' },
    scheduleDelayMs: 100,
    maxExportBatchSize: undefined,
    attributeValueLengthLimit: undefined,
  })
})

test('tracing: values the exporter cannot use are errors at their key paths', () => {
  const byPath = errorsByPath(
    [
      'otel_traces_exporter: otlp',
      'otel_exporter_otlp_traces_protocol: thrift',
      'otel_traces_sampler_arg: half',
      'otel_exporter_otlp_timeout: [1]',
      'otel_exporter_otlp_headers: [a=%zz]',
      '',
    ].join('\n'),
  )
  assert.match(byPath.get('otel_exporter_otlp_traces_protocol') ?? '', /grpc, http\/protobuf or http\/json/)
  assert.match(byPath.get('otel_traces_sampler_arg') ?? '', /expected a number/)
  assert.match(byPath.get('otel_exporter_otlp_timeout') ?? '', /expected a number/)
  assert.match(byPath.get('otel_exporter_otlp_headers[0]') ?? '', /percent-encoding/)
  assert.match(errorsByPath('otel_traces_exporter: jaeger\n').get('otel_traces_exporter') ?? '', /expected otlp or none/)
})

test('metrics: certificate and key together, a client CA needs them, basic auth is base64 of user:password', () => {
  const cert = b64(testPem('a.cert.pem'))
  const key = b64(testPem('a.key.pem'))
  assert.match(errorsByPath(`metrics_address: ":9902"\nmetrics_certificate: ${cert}\n`).get('metrics_certificate') ?? '', /metrics_certificate_key .* is required together/)
  assert.match(errorsByPath(`metrics_address: ":9902"\nmetrics_client_ca: ${cert}\n`).get('metrics_client_ca') ?? '', /needs metrics_certificate and metrics_certificate_key/)
  assert.match(errorsByPath(`metrics_basic_auth: ${b64(':p')}\n`).get('metrics_basic_auth') ?? '', /user:password/)
  assert.match(errorsByPath(`metrics_basic_auth: "${b64('u:p')} "\n`).get('metrics_basic_auth') ?? '', /user:password/)
  const { config, issues } = loadYaml(`metrics_address: ":9902"\nmetrics_basic_auth: ${b64('u:p')}\nmetrics_certificate: ${cert}\nmetrics_certificate_key: ${key}\nmetrics_client_ca: ${cert}\n`)
  assert.deepEqual(errors(issues), [])
  assert.equal(config?.metrics.address, ':9902')
  assert.equal(config?.metrics.basicAuth, b64('u:p'))
  assert.match(config?.metrics.certificate ?? '', /BEGIN CERTIFICATE/)
  assert.match(config?.metrics.clientCa ?? '', /BEGIN CERTIFICATE/)
})

test('builtin_idp_address must be host:port', () => {
  assert.match(errorsByPath('builtin_idp_address: localhost\n').get('builtin_idp_address') ?? '', /expected host:port/)
  assert.match(errorsByPath('builtin_idp_address: "127.0.0.1:70000"\n').get('builtin_idp_address') ?? '', /expected host:port/)
  assert.deepEqual(loadYaml('builtin_idp_address: "[::1]:9000"\n').config?.builtinIdp, { usersFile: undefined, address: '[::1]:9000', host: '::1', port: 9000 })
})

test('route upstream health: healthy_panic_threshold is a percentage; outlier_detection fields have their kinds', () => {
  assert.match(errorsByPath(`${ROUTE}    healthy_panic_threshold: 101\n`).get('routes[0].healthy_panic_threshold') ?? '', /0 to 100/)
  assert.match(errorsByPath(`${ROUTE}    outlier_detection: often\n`).get('routes[0].outlier_detection') ?? '', /expected a mapping/)
  const byPath = errorsByPath(`${ROUTE}    outlier_detection: {consecutive_5xx: -1, consecutive_gateway_failure: two, base_ejection_time: soon, max_ejection_time: 1h}\n`)
  assert.match(byPath.get('routes[0].outlier_detection.consecutive_5xx') ?? '', /non-negative integer/)
  assert.match(byPath.get('routes[0].outlier_detection.consecutive_gateway_failure') ?? '', /non-negative integer/)
  assert.match(byPath.get('routes[0].outlier_detection.base_ejection_time') ?? '', /expected a duration/)
  assert.match(byPath.get('routes[0].outlier_detection.max_ejection_time') ?? '', /expected a duration/)
  const gateway = loadYaml(`${ROUTE}    outlier_detection: {consecutive_gateway_failure: 2, interval: 10s}\n`).config?.routes[0]?.outlierDetection
  assert.deepEqual(gateway, { ...DEFAULT_OUTLIER_DETECTION, consecutiveFailures: 2 })
})

test('route jwt_issuer_format: hostOnly or uri (also Pomerium spellings), else an error at its key path', () => {
  assert.equal(loadYaml(`${ROUTE}    jwt_issuer_format: IssuerURI\n`).config?.routes[0]?.jwtIssuerFormat, 'uri')
  assert.match(errorsByPath(`${ROUTE}    jwt_issuer_format: bogus\n`).get('routes[0].jwt_issuer_format') ?? '', /expected hostOnly or uri/)
  assert.match(errorsByPath(`policy:\n  - from: https://p.example.com\n    to: http://p\n    jwt_issuer_format: x\n`).get('policy[0].jwt_issuer_format') ?? '', /expected hostOnly or uri/)
})

test('route identity settings: Kubernetes token trimmed, Google serverless flag, groups filter', () => {
  const { config, issues } = loadYaml(`${ROUTE}    kubernetes_service_account_token: " tok\\n"\n    enable_google_cloud_serverless_authentication: true\n    jwt_groups_filter: [a, b]\n`)
  assert.deepEqual(errors(issues), [])
  const route = config?.routes[0]
  assert.equal(route?.kubernetesServiceAccountToken, 'tok')
  assert.equal(route?.enableGoogleCloudServerlessAuthentication, true)
  assert.deepEqual(route?.jwtGroupsFilter, ['a', 'b'])
  assert.equal(loadYaml(`${ROUTE}    kubernetes_service_account_token: "  "\n`).config?.routes[0]?.kubernetesServiceAccountToken, undefined)
})

test('signing_key: private keys of a supported kind, checked at load as the authorize service reads them', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const { config, issues } = loadYaml(`signing_key: ${b64(ec)}\n`)
  assert.deepEqual(errors(issues), [])
  assert.equal(config?.signingKey, ec)
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  assert.match(errorsByPath(`signing_key: ${b64(weak)}\n`).get('signing_key') ?? '', /at least 2048 bits/)
  assert.match(errorsByPath(`signing_key: ${b64(testPem('a.cert.pem'))}\n`).get('signing_key') ?? '', /expected an unencrypted private key/)
})

test('services without the databroker need its URL', () => {
  assert.match(errorsByPath('services: proxy,authorize\n').get('databroker_service_url') ?? '', /required when services \(proxy,authorize\) does not include databroker/)
  assert.deepEqual(loadYaml('services: proxy\ndatabroker_service_urls: [http://db:5443]\n').config?.databrokerServiceUrls, ['http://db:5443'])
  assert.ok(loadYaml('services: proxy,databroker\n').config)
})
