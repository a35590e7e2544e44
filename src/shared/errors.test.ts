/**
 * One error model (docs/reference/errors.md): every error class in src/ extends `CodedError`,
 * every module's list of codes is part of the registry, and every code is documented.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { DATABROKER_ERROR_CODES } from '../databroker/errors.js'
import { PROVIDER_TOKEN_ERROR_CODES } from '../idp/provider-tokens/errors.js'
import { IDP_ERROR_CODES } from '../idp/provider.js'
import { apiErrorFromWire } from '../internal/wire.js'
import { CodedError, ERROR_AREAS, ERROR_CODES, isErrorCode, PortcullisError } from './errors.js'

const SRC = fileURLToPath(new URL('..', import.meta.url))

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return sourceFiles(path)
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : []
  })
}

test('no error class in src/ bypasses the registry: each extends CodedError (or a coded class)', () => {
  const uncoded: string[] = []
  for (const file of sourceFiles(SRC)) {
    for (const m of readFileSync(file, 'utf8').matchAll(/class (\w+) extends (\w*Error)\b/g)) {
      if (m[1] === 'CodedError' || m[2] === 'CodedError' || m[2] === 'PortcullisError') continue
      uncoded.push(`${file.slice(SRC.length)}: ${m[1]} extends ${m[2]}`)
    }
  }
  assert.deepEqual(uncoded, [])
})

test("every module's codes are registered", () => {
  for (const code of [...DATABROKER_ERROR_CODES, ...IDP_ERROR_CODES, ...PROVIDER_TOKEN_ERROR_CODES]) assert.ok(isErrorCode(code), code)
  assert.equal(isErrorCode('ERR_NO_SUCH_THING'), false)
  assert.equal(isErrorCode('toString'), false)
})

test('every code has a status, a title, a one-line description and a documented area', () => {
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^ERR_[A-Z0-9_]+$/)
    assert.ok(Number.isInteger(info.status) && info.status >= 400 && info.status <= 599, code)
    assert.notEqual(info.title, '', code)
    assert.ok(info.description.length > 10 && !info.description.includes('\n'), code)
    assert.ok(Object.hasOwn(ERROR_AREAS, info.area), code)
  }
})

test('PortcullisError takes its status from the registry and is a CodedError', () => {
  const err = new PortcullisError('ERR_UPSTREAM_TIMEOUT', 'The upstream did not answer in time.')
  assert.ok(err instanceof CodedError)
  assert.equal(err.status, 504)
  assert.equal(err.code, 'ERR_UPSTREAM_TIMEOUT')
})

test('an internal API answer keeps a registered code; an unknown one becomes ERR_BAD_ANSWER with the peer code kept', () => {
  const known = apiErrorFromWire(410, 'ERR_DATABROKER_SYNC_TOO_OLD', 'pruned')
  assert.deepEqual([known.status, known.code, known.message], [410, 'ERR_DATABROKER_SYNC_TOO_OLD', 'pruned'])
  const unknown = apiErrorFromWire(409, 'ERR_FROM_THE_FUTURE', 'newer peer')
  assert.deepEqual([unknown.status, unknown.code, unknown.message], [409, 'ERR_BAD_ANSWER', 'ERR_FROM_THE_FUTURE: newer peer'])
  const bare = apiErrorFromWire(502, undefined, 'HTTP 502')
  assert.deepEqual([bare.code, bare.message], ['ERR_BAD_ANSWER', 'HTTP_502: HTTP 502'])
})
