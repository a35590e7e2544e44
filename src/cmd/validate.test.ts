import assert from 'node:assert/strict'
import { test } from 'node:test'
import { tempDir } from '../config/test-helpers.js'
import { parseArgs } from './args.js'
import { validate } from './validate.js'

const MISTYPED = [
  'routes:',
  '  - from: https://public.example.com',
  '    to: http://127.0.0.1:1',
  '    allow_public_unauthenticated_acess: true',
  '',
].join('\n')

function run(yaml: string, allowUnknown?: boolean): { code: number; lines: string[] } {
  const tmp = tempDir()
  try {
    const lines: string[] = []
    const code = validate(tmp.write('config.yaml', yaml), (l) => lines.push(l), allowUnknown === undefined ? {} : { allowUnknown })
    return { code, lines }
  } finally {
    tmp.cleanup()
  }
}

test('validate fails on an unknown key, names the intended one, and says how to accept unknown keys', () => {
  const { code, lines } = run(MISTYPED)
  assert.equal(code, 1)
  assert.match(lines[0] ?? '', /config\.yaml:4:5: error: routes\[0\]\.allow_public_unauthenticated_acess: unknown setting.*did you mean allow_public_unauthenticated_access\?/)
  assert.match(lines.at(-1) ?? '', /1 error; the configuration is not valid \(1 unknown key: .*--allow-unknown/)
})

test('validate --allow-unknown reports unknown keys as warnings and exits 0', () => {
  const { code, lines } = run(MISTYPED, true)
  assert.equal(code, 0)
  assert.match(lines[0] ?? '', /warning: routes\[0\]\.allow_public_unauthenticated_acess: unknown setting/)
  assert.ok(lines.some((l) => /valid, 1 route/.test(l)))
  // The summary says what the typo did: the route has no allow rule left.
  assert.ok(lines.some((l) => /routes\[0\] .*\(protected, no allow rule: admits nobody\)/.test(l)), lines.join('\n'))
})

test('--allow-unknown is a validate flag', () => {
  assert.equal(parseArgs(['validate', '--allow-unknown', '--config', 'c.yaml']).allowUnknown, true)
  assert.equal(parseArgs(['validate', '--config', 'c.yaml']).allowUnknown, undefined)
  assert.deepEqual(parseArgs(['serve', '--allow-unknown']).errors, ['--allow-unknown applies to validate only'])
})

test('the route summary marks only routes without any allow rule as admitting nobody', () => {
  const { code, lines } = run(
    [
      'routes:',
      '  - from: https://a.example.com',
      '    to: http://127.0.0.1:1',
      '    allowed_domains: [example.com]',
      '  - from: https://b.example.com',
      '    to: http://127.0.0.1:1',
      '    policy: { allow: { or: [{ email: { is: ada@example.com } }] } }',
      '  - from: https://c.example.com',
      '    to: http://127.0.0.1:1',
      '    policy: { deny: { or: [{ http_method: DELETE }] } }',
      '',
    ].join('\n'),
  )
  assert.equal(code, 0, lines.join('\n'))
  assert.ok(lines.some((l) => /routes\[0\] https:\/\/a\.example\.com .*\(protected\)$/.test(l)), lines.join('\n'))
  assert.ok(lines.some((l) => /routes\[1\] https:\/\/b\.example\.com .*\(protected\)$/.test(l)), lines.join('\n'))
  assert.ok(lines.some((l) => /routes\[2\] https:\/\/c\.example\.com .*\(protected, no allow rule: admits nobody\)$/.test(l)), lines.join('\n'))
})
