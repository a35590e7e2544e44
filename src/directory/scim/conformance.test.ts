/**
 * SCIM conformance, driven by what the endpoint publishes (its /Schemas and /ResourceTypes), as
 * the SCIM compliance checker `scim2-tester` drives its checks (it cannot be installed here: these
 * machines do not reach PyPI). Written from that tool's documented behaviour, not its code:
 *
 * - discovery: ServiceProviderConfig, ResourceTypes and Schemas (each by id), unknown ids and an
 *   unknown URL are SCIM errors with status 404, writes to discovery endpoints are 405;
 * - per resource type: create with required attributes (201), read (200), list contains it;
 *   create with every writable attribute, core and extension, values made from each attribute's
 *   type (references point at resources made for them); `attributes` / `excludedAttributes` on
 *   read, list and a root `POST /.search`; replace (exactly 200); PATCH add, replace and remove
 *   of each writable attribute by its path and of the extension by its bare URN, the effect checked
 *   exactly in the answer and on a later read; delete (204), then 404.
 */
import assert from 'node:assert/strict'
import { createHash, randomInt, randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'

import { MemoryRecordStore } from '../../databroker/index.js'
import { createLogger } from '../../shared/log.js'
import { startScimListener } from './listener.js'
import type { ScimListener } from './listener.js'
import { ScimService } from './service.js'

type Json = Record<string, unknown>
type Attr = Json & { name: string; type: string; multiValued: boolean; required: boolean; mutability: string; returned: string; subAttributes?: Attr[]; referenceTypes?: string[] }

const TOKEN = 'conformance-token-abcdefghijklmnop'
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error'
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp'
let store: MemoryRecordStore
let listener: ScimListener
let base: string

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; type: string }> {
  const res = await fetch(path.startsWith('http') ? path : `${base}${path}`, {
    signal: AbortSignal.timeout(10_000),
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Json), type: res.headers.get('content-type') ?? '' }
}

function isError(r: { body: Json; type: string }, status: number): void {
  assert.match(r.type, /^application\/(scim\+)?json/)
  assert.deepEqual(r.body['schemas'], [ERROR])
  assert.equal(r.body['status'], String(status))
}

/** Drops nulls, as the checker compares. */
function clean(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clean)
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null && x !== undefined).map(([k, x]) => [k, clean(x)]))
  return v
}

before(async () => {
  store = new MemoryRecordStore()
  const digest = createHash('sha256').update(TOKEN).digest('hex')
  listener = await startScimListener({ address: '127.0.0.1:0', service: new ScimService({ store, logger: createLogger('disabled') }), logger: createLogger('disabled'), tokenDigests: () => [digest] })
  base = `${listener.url}/scim/v2`
})
after(async () => {
  await listener.close()
  await store.close()
})

describe('scim conformance: discovery', () => {
  it('every discovery document, by list and by id; unknown ids and URLs are SCIM 404s; writes are 405', async () => {
    assert.equal((await call('GET', '/ServiceProviderConfig')).status, 200)
    const types = (await call('GET', '/ResourceTypes')).body['Resources'] as Json[]
    assert.ok(types.length > 0)
    for (const t of types) {
      assert.equal((await call('GET', `/ResourceTypes/${String(t['id'])}`)).status, 200)
      assert.equal((await call('GET', `/Schemas/${String(t['schema'])}`)).status, 200)
    }
    const schemas = (await call('GET', '/Schemas')).body['Resources'] as Json[]
    for (const s of schemas) assert.equal((await call('GET', `/Schemas/${String(s['id'])}`)).status, 200)
    isError(await call('GET', `/ResourceTypes/${randomUUID()}`), 404)
    isError(await call('GET', `/Schemas/${randomUUID()}`), 404)
    isError(await call('GET', `/${randomUUID()}`), 404)
    for (const path of ['/ServiceProviderConfig', '/ResourceTypes', '/Schemas']) {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) isError(await call(method, path, method === 'DELETE' ? undefined : {}), 405)
    }
  })
})

interface Model {
  readonly endpoint: string
  readonly schema: string
  readonly attributes: Attr[]
  readonly extensions: Array<{ urn: string; attributes: Attr[] }>
}

async function models(): Promise<Map<string, Model>> {
  const schemas = new Map(((await call('GET', '/Schemas')).body['Resources'] as Json[]).map((s) => [String(s['id']), s['attributes'] as Attr[]]))
  const out = new Map<string, Model>()
  for (const t of (await call('GET', '/ResourceTypes')).body['Resources'] as Json[]) {
    const ext = ((t['schemaExtensions'] as Json[] | undefined) ?? []).map((e) => ({ urn: String(e['schema']), attributes: schemas.get(String(e['schema'])) ?? [] }))
    out.set(String(t['id']), { endpoint: String(t['endpoint']), schema: String(t['schema']), attributes: schemas.get(String(t['schema'])) ?? [], extensions: ext })
  }
  return out
}

const writable = (a: Attr): boolean => a.mutability === 'readWrite' || a.mutability === 'writeOnly' || a.mutability === 'immutable'

describe('scim conformance: every resource type, from its published schema', () => {
  let all: Map<string, Model>
  before(async () => {
    all = await models()
  })

  /** A value for one attribute, by its type (references to a resource type point at a new resource). */
  async function valueFor(a: Attr, path: string, everything: boolean): Promise<unknown> {
    const one = async (): Promise<unknown> => {
      if (a.type === 'complex') {
        const v: Json = {}
        for (const s of a.subAttributes ?? []) {
          if (!writable(s) || (!everything && !s.required)) continue
          v[s.name] = await valueFor({ ...s, multiValued: false }, `${path}.${s.name}`, everything)
        }
        if (typeof v['$ref'] === 'string' && 'value' in v) v['value'] = String(v['$ref']).split('/').pop()
        if (a.multiValued && (a.subAttributes ?? []).some((s) => s.name === 'primary')) v['primary'] = true
        return v
      }
      if (a.type === 'boolean') return randomInt(2) === 1
      if (a.type === 'integer') return randomInt(1000)
      if (a.type === 'reference') {
        const target = (a.referenceTypes ?? []).find((r) => all.has(r))
        if (!target) return `https://${randomUUID()}.test`
        const made = await create(target, false)
        return String((made['meta'] as Json)['location'])
      }
      if (path.endsWith('emails.value')) return `${randomUUID()}@${randomUUID()}.com`
      if (path.endsWith('phoneNumbers.value')) return String(randomInt(1e9, 9e9))
      return randomUUID()
    }
    return a.multiValued ? [await one()] : await one()
  }

  async function fill(type: string, everything: boolean): Promise<Json> {
    const m = all.get(type)
    assert.ok(m)
    const body: Json = { schemas: [m.schema, ...(everything ? m.extensions.map((e) => e.urn) : [])] }
    for (const a of m.attributes) if (writable(a) && (everything || a.required)) body[a.name] = await valueFor(a, a.name, everything)
    if (everything) {
      for (const e of m.extensions) {
        const v: Json = {}
        for (const a of e.attributes) if (writable(a)) v[a.name] = await valueFor(a, a.name, true)
        body[e.urn] = v
      }
    }
    return body
  }

  async function create(type: string, everything: boolean): Promise<Json> {
    const m = all.get(type)
    assert.ok(m)
    const r = await call('POST', m.endpoint, await fill(type, everything))
    assert.equal(r.status, 201, JSON.stringify(r.body))
    return r.body
  }

  for (const type of ['User', 'Group']) {
    it(`${type}: create, read, list, attributes, replace, delete`, async () => {
      const m = all.get(type)
      assert.ok(m)
      const made = await create(type, false)
      const id = String(made['id'])
      assert.equal((await call('GET', `${m.endpoint}/${id}`)).status, 200)
      const list = await call('GET', m.endpoint)
      assert.ok((list.body['Resources'] as Json[]).some((r) => r['id'] === id))
      // attributes / excludedAttributes: the first two default, writable, optional attributes.
      const full = await create(type, true)
      const fid = String(full['id'])
      // (A Group has one such attribute, members: it is both.)
      const candidates = m.attributes.filter((a) => a.returned === 'default' && writable(a) && !a.required).map((a) => a.name)
      const x = candidates[0]
      const y = candidates[1] ?? x
      assert.ok(x && y)
      assert.ok(x in (await call('GET', `${m.endpoint}/${fid}?attributes=${x}`)).body)
      assert.ok(!(y in (await call('GET', `${m.endpoint}/${fid}?excludedAttributes=${y}`)).body))
      const listed = ((await call('GET', `${m.endpoint}?attributes=${x}`)).body['Resources'] as Json[]).find((r) => r['id'] === fid)
      assert.ok(listed && x in listed)
      const searched = await call('POST', '/.search', { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], excludedAttributes: [y] })
      assert.equal(searched.status, 200)
      const found = (searched.body['Resources'] as Json[]).find((r) => r['id'] === fid)
      assert.ok(found && !(y in found))
      // Replace with new values (If-Match with the current version, as etag.supported says).
      const replacement = { ...(await fill(type, false)), id }
      const put = await call('PUT', `${m.endpoint}/${id}`, replacement, { 'if-match': String((made['meta'] as Json)['version']) })
      assert.equal(put.status, 200, JSON.stringify(put.body))
      assert.equal((await call('DELETE', `${m.endpoint}/${id}`)).status, 204)
      isError(await call('GET', `${m.endpoint}/${id}`), 404)
    })

    it(`${type}: PATCH add, replace and remove of each writable attribute, the effect exact in the answer and on a later read`, async () => {
      const m = all.get(type)
      assert.ok(m)
      const check = async (id: string, key: string, expected: unknown, extension?: string): Promise<void> => {
        for (const body of [undefined, (await call('GET', `${m.endpoint}/${id}`)).body]) {
          const source = body ?? (await call('GET', `${m.endpoint}/${id}`)).body
          const holder = extension ? ((source[extension] ?? {}) as Json) : source
          const got = clean(holder[key])
          if (expected === undefined) assert.ok(got === undefined || (Array.isArray(got) && got.length === 0), `${key}: ${JSON.stringify(got)}`)
          else assert.deepEqual(got, clean(expected), key)
        }
      }
      const patch = async (id: string, op: string, path: string, value?: unknown): Promise<Json> => {
        const r = await call('PATCH', `${m.endpoint}/${id}`, { schemas: [PATCH], Operations: [{ op, path, ...(value !== undefined ? { value } : {}) }] })
        assert.ok(r.status === 200 || r.status === 204, `${op} ${path}: ${r.status} ${JSON.stringify(r.body)}`)
        return r.body
      }
      // add: optional, mutable attributes, one after another on one resource.
      const target = String((await create(type, false))['id'])
      for (const a of m.attributes.filter((x) => writable(x) && !x.required)) {
        const v = await valueFor(a, a.name, true)
        const answer = await patch(target, 'add', a.name, v)
        assert.deepEqual(clean(answer[a.name]), clean(v), `add ${a.name}`)
        await check(target, a.name, v)
      }
      for (const e of m.extensions) {
        for (const a of e.attributes.filter(writable)) {
          const v = await valueFor(a, a.name, true)
          await patch(target, 'add', `${e.urn}:${a.name}`, v)
          await check(target, a.name, v, e.urn)
        }
        const whole: Json = {}
        for (const a of e.attributes.filter(writable)) whole[a.name] = await valueFor(a, a.name, true)
        await patch(target, 'replace', e.urn, whole)
        assert.deepEqual(clean((await call('GET', `${m.endpoint}/${target}`)).body[e.urn]), clean(whole))
      }
      // replace: every readWrite attribute, required ones included.
      for (const a of m.attributes.filter((x) => x.mutability === 'readWrite')) {
        const v = await valueFor(a, a.name, true)
        await patch(target, 'replace', a.name, v)
        await check(target, a.name, v)
      }
      // remove: optional readWrite attributes of a resource that has them all.
      const full = String((await create(type, true))['id'])
      for (const a of m.attributes.filter((x) => x.mutability === 'readWrite' && !x.required)) {
        await patch(full, 'remove', a.name)
        await check(full, a.name, undefined)
      }
      for (const e of m.extensions) {
        await patch(full, 'remove', e.urn)
        assert.equal((await call('GET', `${m.endpoint}/${full}`)).body[e.urn], undefined)
      }
    })
  }
})
