import assert from 'node:assert/strict'
import { it } from 'node:test'
import { MemoryRecordStore } from '../databroker/memory.js'
import type { IdentityProvider } from '../idp/provider.js'
import { refreshSession } from './refresh.js'
import { SessionStore } from './session-store.js'

it('a refresh keeps the devices that authenticated the session while the provider answered', async () => {
  const sessions = new SessionStore(new MemoryRecordStore(), { lifetimeMs: 3600_000 })
  const { session } = await sessions.create({ userId: 'alice', idpId: 'idp', accessToken: 'a1', refreshToken: 'r1', idToken: undefined, tokenExpiresAt: 1, claims: { sub: 'alice' } })
  const bindDevice = async (): Promise<unknown> => sessions.update({ ...(await sessions.get(session.id))!, deviceCredentialIds: ['key-1'] })
  const provider = {
    refreshWith: 'refresh_token',
    async refresh() {
      // The person proves a device while the refresh is in flight.
      await bindDevice()
      return { accessToken: 'a2', refreshToken: 'r2', idToken: undefined, expiresIn: 3600, claims: { sub: 'alice' } }
    },
  } as unknown as IdentityProvider
  const outcome = await refreshSession(session, { sessions, provider, nowMs: () => 2 })
  assert.equal(outcome.kind, 'refreshed')
  const stored = await sessions.get(session.id)
  assert.equal(stored?.accessToken, 'a2')
  assert.deepEqual(stored?.deviceCredentialIds, ['key-1'])
})
