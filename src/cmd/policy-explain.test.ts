import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { policyCommand } from './policy-explain.js'

const file = join(mkdtempSync(join(tmpdir(), 'explain-')), 'config.yaml')
writeFileSync(
  file,
  `routes:
  - from: https://admin.example.com
    to: http://127.0.0.1:1
    name: Admin console
    policy:
      allow:
        and:
          - domain: { is: example.com }
          - claim/groups: admins
      deny:
        or:
          - http_method: { is: DELETE }
  - from: https://typo.example.com
    to: http://127.0.0.1:1
`,
)

function explain(...args: string[]): { code: number; text: string } {
  let text = ''
  const code = policyCommand(['explain', '--config', file, ...args], (s) => (text += s))
  return { code, text }
}

test('policy explain: allow, deny with reasons, sign-in, no route', () => {
  const ok = explain('--url', 'https://admin.example.com/x', '--email', 'alice@example.com', '--groups', 'admins,eng')
  assert.equal(ok.code, 0)
  assert.match(ok.text, /route: {4}Admin console/)
  assert.match(ok.text, /decision: allow/)
  assert.match(ok.text, /true {2}domain/)

  const bob = explain('--url', 'https://admin.example.com/x', '--email', 'bob@example.com', '--groups', 'eng')
  assert.match(bob.text, /decision: 403 Forbidden/)
  assert.match(bob.text, /claim-unauthorized: /)

  const del = explain('--url', 'https://admin.example.com/x', '--email', 'alice@example.com', '--groups', 'admins', '--method', 'DELETE')
  assert.match(del.text, /decision: 403/)
  assert.match(del.text, /http-method-ok/)

  assert.match(explain('--url', 'https://admin.example.com/x').text, /decision: sign-in required/)
  assert.match(explain('--url', 'https://nothing.example.com/').text, /404/)
  assert.equal(explain('--email', 'x@y').code, 2)
  assert.equal(policyCommand(['explain', '--config', file, '--url', 'https://admin.example.com/', '--bogus'], () => undefined), 2)
})

test('policy explain: the deciding rule in words, and a route without an allow rule says so', () => {
  const bob = explain('--url', 'https://admin.example.com/x', '--email', 'bob@example.com', '--groups', 'eng')
  assert.match(bob.text, /why \(as the 403 page says it\):\n {2}- your identity provider does not report an attribute this route requires \(the claim groups including "admins"\)/)

  const del = explain('--url', 'https://admin.example.com/x', '--email', 'alice@example.com', '--groups', 'admins', '--method', 'DELETE')
  assert.match(del.text, /- a deny rule of this route matches this request: http_method is "DELETE"/)

  // What a mistyped allow key leaves: a route with no allow rule. Nobody is admitted, and explain says why.
  for (const who of [['--email', 'alice@example.com'], ['--anonymous']]) {
    const typo = explain('--url', 'https://typo.example.com/', ...who)
    assert.equal(typo.code, 0)
    assert.match(typo.text, /decision: 403 Forbidden\nwhy \(as the 403 page says it\):\n {2}- this route has no allow rule, so it admits nobody\n/)
  }
})

test('policy explain: a device in the session (--device-type, --device-id, --device-approved)', () => {
  const devices = join(mkdtempSync(join(tmpdir(), 'explain-')), 'config.yaml')
  writeFileSync(
    devices,
    `device_types:
  - id: kiosk
    approval_required: true
routes:
  - from: https://ops.example.com
    to: http://127.0.0.1:1
    policy:
      allow:
        and:
          - email: { is: alice@example.com }
          - device: { type: kiosk }
  - from: https://pinned.example.com
    to: http://127.0.0.1:1
    policy:
      allow:
        and:
          - device: { is: ID-1 }
`,
  )
  const run = (...args: string[]): { code: number; text: string } => {
    let text = ''
    const code = policyCommand(['explain', '--config', devices, ...args], (s) => (text += s))
    return { code, text }
  }
  const none = run('--url', 'https://ops.example.com/', '--email', 'alice@example.com')
  assert.equal(none.code, 0)
  assert.match(none.text, /no device/)
  assert.match(none.text, /decision: device required: enroll or authenticate a device of type kiosk/)
  const pending = run('--url', 'https://ops.example.com/', '--email', 'alice@example.com', '--device-type', 'kiosk')
  assert.match(pending.text, /decision: 450 device not allowed/)
  assert.match(pending.text, /why \(as the 450 page says it\)/)
  const approved = run('--url', 'https://ops.example.com/', '--email', 'alice@example.com', '--device-type', 'kiosk', '--device-approved')
  assert.match(approved.text, /device explain-device \(kiosk, approved\)/)
  assert.match(approved.text, /decision: allow/)
  assert.match(run('--url', 'https://pinned.example.com/', '--email', 'a@b.c', '--device-id', 'ID-2').text, /decision: 450/)
  assert.match(run('--url', 'https://pinned.example.com/', '--email', 'a@b.c', '--device-id', 'ID-1').text, /decision: allow/)
  const unknown = run('--url', 'https://pinned.example.com/', '--email', 'a@b.c', '--device-type', 'laptop')
  assert.equal(unknown.code, 2)
  assert.match(unknown.text, /not a configured device type/)
})
