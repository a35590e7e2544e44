import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { PROVIDER_NAMES, effectiveScopes, isProviderName, providerDefaults } from './providers.js'

// Every idp_provider of Pomerium docs: Identity providers (hosted aside).
const REFERENCE_8 = ['oidc', 'google', 'azure', 'okta', 'onelogin', 'ping', 'auth0', 'cognito', 'gitlab', 'apple', 'github']

void describe('provider defaults', () => {
  void it('has an entry for every provider of Pomerium docs: Identity providers, and no other', () => {
    for (const name of REFERENCE_8) {
      const defaults = providerDefaults(name)
      assert.ok(defaults, name)
      assert.equal(defaults.name, name)
      assert.ok(defaults.scopes.length > 0, name)
    }
    assert.deepEqual([...PROVIDER_NAMES].sort(), [...REFERENCE_8].sort())
    assert.equal(providerDefaults('hosted'), undefined)
    assert.equal(providerDefaults('constructor'), undefined)
    assert.equal(isProviderName('toString'), false)
  })

  void it('carries the per-provider defaults of the reference', () => {
    assert.deepEqual(providerDefaults('oidc')?.scopes, ['openid', 'profile', 'email', 'offline_access'])
    const google = providerDefaults('google')
    assert.deepEqual(google?.requestParams, { prompt: 'select_account consent', access_type: 'offline' })
    assert.equal(google?.issuerUrl, 'https://accounts.google.com')
    const azure = providerDefaults('azure')
    assert.equal(azure?.userIdClaim, 'oid')
    assert.deepEqual(azure?.requestParams, { prompt: 'select_account' })
    assert.equal(azure?.issuerUrl, 'https://login.microsoftonline.com/common/v2.0')
    const apple = providerDefaults('apple')
    assert.deepEqual(apple?.requestParams, { response_mode: 'form_post' })
    assert.equal(apple?.formPostCallback, true)
    assert.deepEqual(apple?.scopes, ['name', 'email'])
    const github = providerDefaults('github')
    assert.equal(github?.protocol, 'oauth2')
    assert.deepEqual(github?.scopes, ['user:email', 'read:org'])
    assert.equal(providerDefaults('auth0')?.signOut, 'auth0')
    assert.equal(providerDefaults('auth0')?.issuerTrailingSlash, true)
    assert.equal(providerDefaults('cognito')?.signOut, 'cognito')
    assert.deepEqual(providerDefaults('cognito')?.scopes, ['openid', 'email', 'profile'])
    assert.equal(providerDefaults('gitlab')?.issuerUrl, 'https://gitlab.com')
    assert.equal(apple?.requestParamsMode, 'merge')
    assert.equal(apple?.tokenEndpointAuthMethod, 'client_secret_post')
    assert.equal(apple?.percentEncodeSpaces, true)
    assert.equal(google?.requestParamsMode, 'replace')
    assert.equal(providerDefaults('cognito')?.revocationPathFallback, '/oauth2/revoke')
    for (const name of ['google', 'gitlab', 'cognito', 'onelogin']) assert.equal(providerDefaults(name)?.trimTrailingSlash, true, name)
    assert.equal(providerDefaults('auth0')?.trimTrailingSlash, false)
    for (const name of REFERENCE_8.filter((n) => n !== 'github')) {
      assert.equal(providerDefaults(name)?.protocol, 'oidc', name)
      if (name !== 'azure') assert.equal(providerDefaults(name)?.userIdClaim, 'sub', name)
    }
  })

  void it('picks scopes: configured, else OneLogin v2 variant, else defaults', () => {
    const onelogin = providerDefaults('onelogin')
    assert.ok(onelogin)
    assert.ok(effectiveScopes(onelogin, undefined, 'https://x.onelogin.com/oidc').includes('offline_access'))
    assert.ok(!effectiveScopes(onelogin, undefined, 'https://x.onelogin.com/oidc/2').includes('offline_access'))
    assert.deepEqual(effectiveScopes(onelogin, ['openid'], 'https://x.onelogin.com/oidc/2'), ['openid'])
    assert.deepEqual(effectiveScopes(onelogin, [], undefined), onelogin.scopes)
  })
})
