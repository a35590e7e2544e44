import { test } from 'node:test'
import assert from 'node:assert/strict'

import { routeConfig } from '../../test/fixtures/route-config.js'
import { errors, loadYaml, tempDir } from '../config/test-helpers.js'
import type { RouteConfig } from '../config/types.js'
import { isImpersonationHeader, kubernetesHeaders, wireValue } from './kubernetes.js'

const k8sRoute = (token = 'sa-token'): RouteConfig => routeConfig({ kubernetesServiceAccountToken: token })
/** The route a config with this (YAML) token value loads to. */
const loadedK8sRoute = (yamlToken: string): RouteConfig => {
  const loaded = loadYaml(`routes:\n  - from: https://k8s.example.com\n    to: https://kubernetes.default.svc\n    kubernetes_service_account_token: ${yamlToken}\n`)
  assert.deepEqual(errors(loaded.issues), [])
  const route = loaded.config?.routes[0]
  assert.ok(route)
  return route
}
const FIXED_REMOVALS = ['authorization', 'impersonate-user', 'impersonate-group', 'impersonate-uid']

test('no token on the route: no changes', () => {
  assert.equal(kubernetesHeaders(routeConfig(), { userId: 'u1', email: 'a@example.com' }), undefined)
  assert.equal(kubernetesHeaders(loadedK8sRoute('""'), { userId: 'u1' }), undefined)
  assert.equal(kubernetesHeaders(loadedK8sRoute('"  \\n"'), { userId: 'u1' }), undefined)
})

test('token, email and groups: Authorization replaced, Impersonate-User is the email, one Impersonate-Group value per group', () => {
  const changes = kubernetesHeaders(k8sRoute(), { userId: 'u1', email: 'alice@example.com', groups: ['g1', 'g2', 'GROUP1', 'GROUP2'] })
  assert.deepEqual(changes, {
    set: { authorization: 'Bearer sa-token', 'impersonate-user': 'alice@example.com' },
    setMulti: { 'impersonate-group': ['g1', 'g2', 'GROUP1', 'GROUP2'] },
    remove: FIXED_REMOVALS,
  })
})

test('the token from a _file is trimmed (trailing newline)', () => {
  assert.equal(loadedK8sRoute('"eyJhbGciOi.x.y\\n"').kubernetesServiceAccountToken, 'eyJhbGciOi.x.y')
  assert.equal(kubernetesHeaders(loadedK8sRoute('"tok\\n"'), { userId: 'u1' })?.set['authorization'], 'Bearer tok')
})

test('no email: Impersonate-User is the user id; no groups: no Impersonate-Group', () => {
  const changes = kubernetesHeaders(k8sRoute(), { userId: 'u1', email: '' })
  assert.equal(changes?.set['impersonate-user'], 'u1')
  assert.deepEqual(changes?.setMulti, {})
  assert.equal(kubernetesHeaders(k8sRoute(), { userId: 'u2' })?.set['impersonate-user'], 'u2')
})

test('groups are never split on commas, duplicates and empty values dropped', () => {
  const changes = kubernetesHeaders(k8sRoute(), { userId: 'u1', email: 'a@example.com', groups: ['x,system:masters', 'eng', '', 'eng'] })
  assert.deepEqual(changes?.setMulti, { 'impersonate-group': ['x,system:masters', 'eng'] })
})

test('values a header would alter are dropped, not altered', () => {
  const changes = kubernetesHeaders(k8sRoute(), {
    userId: 'u1',
    email: 'a@example.com\r\nImpersonate-Group: system:masters',
    groups: [' admins', 'admins ', 'ops\n', 'nul\0', 'lone\uD800surrogate', 'with\ttab'],
  })
  assert.equal(changes?.set['impersonate-user'], 'u1', 'an email with CR/LF falls back to the user id')
  assert.deepEqual(changes?.setMulti, { 'impersonate-group': ['with\ttab'] })
})

test('non-ASCII names go out as their UTF-8 bytes (one character per byte, as undici writes latin1)', () => {
  const changes = kubernetesHeaders(k8sRoute(), { userId: 'u1', email: 'zoë@example.com', groups: ['開発', 'équipe', 'ascii'] })
  assert.equal(changes?.set['impersonate-user'], wireValue('zoë@example.com'))
  const groups = changes?.setMulti['impersonate-group'] ?? []
  assert.deepEqual(
    groups.map((g) => Buffer.from(g, 'latin1').toString('utf8')),
    ['開発', 'équipe', 'ascii'],
  )
  assert.equal(groups[2], 'ascii')
  assert.equal(wireValue('é'), '\u00c3\u00a9')
})

test('anonymous (or no usable name): system:anonymous in system:unauthenticated, never the service account itself', () => {
  const anonymous = {
    set: { authorization: 'Bearer sa-token', 'impersonate-user': 'system:anonymous' },
    setMulti: { 'impersonate-group': ['system:unauthenticated'] },
    remove: FIXED_REMOVALS,
  }
  assert.deepEqual(kubernetesHeaders(k8sRoute(), undefined), anonymous)
  assert.deepEqual(kubernetesHeaders(k8sRoute(), { userId: '', email: '', groups: ['admins'] }), anonymous)
})

test('remove lists the impersonate-extra-* names the client sent (any case, _ read as -), once each', () => {
  const changes = kubernetesHeaders(k8sRoute(), { userId: 'u1' }, {
    'impersonate-extra-scopes': 'a',
    'Impersonate-Extra-Reason': 'b',
    impersonate_extra_acme_com_team: 'c',
    'impersonate-user': 'root',
    impersonate_group: 'system:masters',
    'x-impersonate-extra-other': 'kept',
    accept: 'application/json',
  })
  assert.deepEqual(changes?.remove, [...FIXED_REMOVALS, 'impersonate-extra-scopes', 'impersonate-extra-reason', 'impersonate-extra-acme-com-team'])
})

test('isImpersonationHeader: the names to drop by prefix, any case, _ read as -', () => {
  for (const name of ['Impersonate-User', 'impersonate-group', 'IMPERSONATE-UID', 'Impersonate-Extra-Scopes', 'impersonate_extra_x', 'impersonate_user']) {
    assert.equal(isImpersonationHeader(name), true, name)
  }
  for (const name of ['authorization', 'impersonate', 'impersonate-extra', 'x-impersonate-user', 'impersonate-users']) {
    assert.equal(isImpersonationHeader(name), false, name)
  }
})

test('config: a Kubernetes route allows the websocket and spdy/3.1 upgrades (token inline or from a file)', () => {
  const inline = loadYaml('routes:\n  - from: https://k8s.example.com\n    to: https://kubernetes.default.svc\n    kubernetes_service_account_token: abc\n')
  assert.deepEqual(errors(inline.issues), [])
  assert.deepEqual(inline.config?.routes[0]?.allowedUpgrades, ['websocket', 'spdy/3.1'])

  const tmp = tempDir()
  try {
    const tokenFile = tmp.write('token', 'from-file\n')
    const fromFile = loadYaml(`routes:\n  - from: https://k8s.example.com\n    to: https://kubernetes.default.svc\n    kubernetes_service_account_token_file: ${tokenFile}\n    allow_websockets: true\n`)
    assert.deepEqual(errors(fromFile.issues), [])
    const route = fromFile.config?.routes[0]
    assert.ok(route)
    assert.deepEqual(route.allowedUpgrades, ['websocket', 'spdy/3.1'], 'no duplicates')
    assert.equal(route.kubernetesServiceAccountToken, 'from-file')
  } finally {
    tmp.cleanup()
  }

  const plain = loadYaml('routes:\n  - from: https://a.example.com\n    to: http://a\n')
  assert.deepEqual(plain.config?.routes[0]?.allowedUpgrades, [])
})
