import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Denial } from '../authorize/types.js'
import { renderDenial, renderError } from './error-page.js'

const POLICY_DENIAL: Denial = {
  allow: false,
  status: 403,
  code: 'policy-denied',
  reason: 'You are not allowed to open this app: its access policy did not admit this request.',
  reasons: ['the user does not report an attribute this route requires (the claim groups including "admins")'],
  policyReasons: ['claim-unauthorized'],
  user: 'bob@example.com',
  route: 'Admin <console>',
}

/** The page without its per-page nonce, to compare two renderings. */
const withoutNonce = (html: string): string => html.replace(/nonce="[^"]*"/g, 'nonce=""')

describe('renderDenial', () => {
  it('renders a policy denial as the 403 page: reasons in words, the route, who is signed in and how to sign out', () => {
    const page = renderDenial(POLICY_DENIAL, 'req-7', false)
    assert.equal(page.contentType, 'text/html; charset=utf-8')
    assert.match(page.body, /<title>403 Forbidden<\/title>/)
    assert.match(page.body, /You are not allowed to open this app/)
    assert.match(page.body, /<p>Why:<\/p><ul><li>the user does not report an attribute this route requires \(the claim groups including &#34;admins&#34;\)<\/li><\/ul>/)
    assert.match(page.body, /<dt>App<\/dt><dd>Admin &#60;console&#62;<\/dd>/)
    assert.match(page.body, /<dt>Signed in as<\/dt><dd>bob@example\.com<\/dd>/)
    assert.match(page.body, /<a href="\/\.pomerium\/sign_out">Sign out<\/a> to use another account/)
    assert.match(page.body, /Request ID: <code>req-7<\/code>/)
    assert.doesNotMatch(page.body, /Details/)
    assert.match(page.headers['content-security-policy'] ?? '', /default-src 'none'/)
  })

  it('offers no sign-out without a user, and shows the evaluation details only when given', () => {
    const { user, ...anonymous } = POLICY_DENIAL
    assert.equal(user, 'bob@example.com')
    const page = renderDenial({ ...anonymous, details: 'allow: false (claim-unauthorized)\n<b>' }, 'req-8', false)
    assert.doesNotMatch(page.body, /Signed in as|sign_out/)
    assert.match(page.body, /<h2>Details<\/h2><div class="card"><pre>allow: false \(claim-unauthorized\)\n&#60;b&#62;<\/pre>/)
  })

  it('gives a JSON client the error, Pomerium reason codes and the request id', () => {
    const answer = renderDenial(POLICY_DENIAL, 'req-9', true)
    assert.equal(answer.contentType, 'application/json')
    assert.deepEqual(JSON.parse(answer.body), { error: POLICY_DENIAL.reason, reasons: ['claim-unauthorized'], request_id: 'req-9' })
    assert.deepEqual(answer.headers, {})
  })

  it('renders other denials exactly like any error of the same status', () => {
    const unavailable: Denial = { allow: false, status: 503, code: 'unavailable', reason: 'The authorization service is unavailable. Try again in a moment.' }
    for (const json of [false, true]) {
      const denial = renderDenial(unavailable, 'req-10', json)
      const error = renderError(503, unavailable.reason, 'req-10', json)
      assert.equal(withoutNonce(denial.body), withoutNonce(error.body))
      assert.equal(denial.contentType, error.contentType)
    }
  })

  it('answers robots.txt of a protected route as plain text whatever the client accepts', () => {
    for (const json of [false, true]) {
      const answer = renderDenial({ allow: false, status: 200, code: 'robots-txt', reason: 'robots.txt' }, 'req-11', json)
      assert.equal(answer.contentType, 'text/plain; charset=utf-8')
      assert.equal(answer.body, 'User-agent: *\nDisallow: /\n')
    }
  })
})
