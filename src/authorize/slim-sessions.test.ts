/**
 * The authorizer reads the slim session copy (no tokens, no store I/O) on every route but those
 * that forward the provider's tokens upstream, which read the whole record and still get them.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'

import { loadYaml } from '../config/test-helpers.js'
import type { RouteConfig } from '../config/types.js'
import { MemoryRecordStore } from '../databroker/memory.js'
import type { SessionRefresher } from '../session/refresher.js'
import { signSessionHandle } from '../session/session-handle.js'
import { SessionStore, sessionTokenKey } from '../session/session-store.js'
import { countingGets, mapSessionCache, oidcSettingsYaml } from '../session/test-helpers.js'
import type { Session } from '../session/session-store.js'
import { buildAuthSettings } from '../session/settings.js'
import { createLogger } from '../shared/log.js'
import { loadSigningKeys } from '../shared/signing-keys.js'
import { buildAuthorizePlans } from './plans.js'
import { createPolicyAuthorizer } from './policy-authorizer.js'
import type { CheckRequest } from './types.js'
import { createUpstreamHeaderFactory } from './upstream-headers.js'

test('token-forwarding routes read the whole session; every other route reads the slim copy without I/O', async () => {
  const sharedSecret = randomBytes(32)
  const { config } = loadYaml(
    [
      ...oidcSettingsYaml(sharedSecret),
      'routes:',
      '  - from: https://plain.example.com',
      '    to: http://127.0.0.1:1',
      '    allow_any_authenticated_user: true',
      '    pass_identity_headers: true',
      '  - from: https://tokens.example.com',
      '    to: http://127.0.0.1:1',
      '    allow_any_authenticated_user: true',
      "    set_request_headers: {X-Id-Token: '${pomerium.id_token}', X-Access: '${pomerium[\"access_token\"]}'}",
    ].join('\n'),
  )
  assert.ok(config)
  const settings = buildAuthSettings(config)
  const [plain, tokens] = config.routes as [RouteConfig, RouteConfig]
  const { store, reads } = countingGets(new MemoryRecordStore())
  const cache = mapSessionCache()
  const sessions = new SessionStore(store, { lifetimeMs: 3_600_000, tokenKey: sessionTokenKey(sharedSecret), cache })
  const keys = loadSigningKeys(undefined, sharedSecret)
  const logger = createLogger('disabled')
  const plans = buildAuthorizePlans(config, { logger, headers: createUpstreamHeaderFactory({ keys: () => keys }) })
  const authorizer = createPolicyAuthorizer({
    settings: () => settings,
    plans: () => plans,
    secrets: { sharedSecret, cookieSecret: randomBytes(32) },
    sessions,
    refresher: { current: (s: Session) => Promise.resolve(s) } as unknown as SessionRefresher,
    logger,
  })
  const idpId = settings.providerFor(plain)?.id ?? ''
  const { session } = await sessions.create({ userId: 'u1', idpId, accessToken: 'access-token-value', refreshToken: 'refresh', idToken: 'id-token-value', tokenExpiresAt: undefined, claims: { email: 'u1@example.com' } })
  const check = async (route: RouteConfig) => {
    const host = route.from.host
    const now = Math.floor(Date.now() / 1000)
    const handle = signSessionHandle({ iss: 'authn.example.com', sub: 'u1', aud: [host], iat: now, exp: now + 3600, jti: session.id, idp_id: idpId }, sharedSecret)
    const request: CheckRequest = { requestId: 'r', route, method: 'GET', host, authority: host, path: '/', query: '', headers: { cookie: `_pomerium=${handle}` }, clientIp: '192.0.2.1', scheme: 'https' }
    return await authorizer.check(request)
  }
  const before = reads()
  const a = await check(plain)
  assert.ok(a.allow && a.setHeaders?.['x-pomerium-jwt-assertion'])
  assert.equal(reads(), before, 'no store read on a route that does not forward tokens')
  const b = await check(tokens)
  assert.ok(b.allow)
  assert.equal(b.setHeaders?.['x-id-token'], 'id-token-value')
  // Every spelling the template language accepts counts (here the bracket form).
  assert.equal(b.setHeaders?.['x-access'], 'access-token-value')
  assert.equal(reads(), before + 1)
})
