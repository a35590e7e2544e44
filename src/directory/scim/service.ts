/**
 * The SCIM 2.0 service provider (RFC 7643 / 7644; docs/directory.md): `/Users` and `/Groups`
 * with create, get, replace, PATCH, delete, list with `filter`, `startIndex`, `count`,
 * `attributes` / `excludedAttributes`, `POST /.search`, ETags (`If-Match`, `If-None-Match`), and
 * the discovery documents. What a provider pushes is stored as the same directory records the
 * pull sync writes (source `scim`), so policy reads both alike.
 *
 * Every write is validated whole before anything is stored, and writes are serialised (in the
 * process, and across instances by a databroker lease), so a refused request changes nothing and
 * `userName` stays unique. Requests answer
 * with data only; the listener (`listener.ts`) authenticates and bounds them.
 */
import { createHash, randomUUID } from 'node:crypto'

import type { DataRecord, RecordInput, RecordStore } from '../../databroker/index.js'
import { DIRECTORY_GROUP_TYPE, DIRECTORY_USER_TYPE } from '../../session/directory.js'
import type { DirectoryGroupRecord, DirectoryUserRecord } from '../../session/directory.js'
import type { Logger } from '../../shared/log.js'
import { errorBody, ScimError } from './errors.js'
import { FilterError, getAttr, matches, parseFilter, simpleEquality } from './filter.js'
import type { Filter } from './filter.js'
import { applyPatch } from './patch.js'
import {
  ENTERPRISE_ATTRIBUTES,
  ENTERPRISE_USER_SCHEMA,
  GROUP_ATTRIBUTES,
  GROUP_SCHEMA,
  LIST_SCHEMA,
  MAX_RESULTS,
  PATCH_SCHEMA,
  resourceTypes,
  schemas,
  serviceProviderConfig,
  USER_ATTRIBUTES,
  USER_SCHEMA,
} from './schemas.js'

type Json = Record<string, unknown>

export interface ScimRequest {
  readonly method: string
  /** The path below `/scim/v2` (`/Users/123`). */
  readonly path: string
  readonly query: URLSearchParams
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Buffer
  readonly requestId: string
  /** `https://host/scim/v2`: the base of `meta.location`. */
  readonly baseUrl: string
}

export interface ScimResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

export const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8'

/** The databroker lease that serialises SCIM writes across instances and workers. */
const WRITE_LEASE = 'scim-write'
/** Longest a write may hold it (a crashed holder frees it after this). */
const WRITE_LEASE_MS = 30_000
/** Longest a write waits for it. */
const WRITE_LEASE_WAIT_MS = 10_000

type Kind = 'User' | 'Group'

interface KindInfo {
  readonly type: string
  readonly schema: string
  readonly endpoint: string
  readonly attributes: ReadonlyArray<Record<string, unknown>>
}

const KINDS: Readonly<Record<Kind, KindInfo>> = {
  User: { type: DIRECTORY_USER_TYPE, schema: USER_SCHEMA, endpoint: 'Users', attributes: USER_ATTRIBUTES },
  Group: { type: DIRECTORY_GROUP_TYPE, schema: GROUP_SCHEMA, endpoint: 'Groups', attributes: GROUP_ATTRIBUTES },
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function header(req: ScimRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

export function scimJson(status: number, value: unknown, extra: Readonly<Record<string, string>> = {}): ScimResponse {
  return { status, headers: { 'content-type': SCIM_CONTENT_TYPE, 'cache-control': 'no-store', ...extra }, body: JSON.stringify(value) }
}

export function scimError(e: ScimError): ScimResponse {
  return scimJson(e.status, errorBody(e))
}

export interface ScimServiceOptions {
  readonly store: RecordStore
  readonly logger: Logger
  readonly now?: () => Date
}

export class ScimService {
  readonly #store: RecordStore
  readonly #logger: Logger
  readonly #now: () => Date
  #writes: Promise<unknown> = Promise.resolve()

  constructor(options: ScimServiceOptions) {
    this.#store = options.store
    this.#logger = options.logger
    this.#now = options.now ?? (() => new Date())
  }

  async handle(req: ScimRequest): Promise<ScimResponse> {
    try {
      return await this.#route(req)
    } catch (err) {
      if (err instanceof ScimError) return scimError(err)
      throw err
    }
  }

  async #route(req: ScimRequest): Promise<ScimResponse> {
    const parts = req.path.split('/').filter((p) => p !== '')
    const [first, second, third] = parts
    const method = req.method.toUpperCase()
    if (parts.length === 1 && first === 'ServiceProviderConfig') return this.#readOnly(method, serviceProviderConfig(req.baseUrl))
    if (first === 'ResourceTypes' || first === 'Schemas') {
      if (method !== 'GET') throw new ScimError(405, undefined, `${method} is not allowed here`)
      const all = first === 'ResourceTypes' ? resourceTypes(req.baseUrl) : schemas(req.baseUrl)
      if (parts.length === 1) return scimJson(200, { schemas: [LIST_SCHEMA], totalResults: all.length, startIndex: 1, itemsPerPage: all.length, Resources: all })
      const one = parts.length === 2 ? all.find((x) => x['id'] === second) : undefined
      if (!one) throw new ScimError(404, undefined, `no ${first === 'ResourceTypes' ? 'resource type' : 'schema'} ${JSON.stringify(second)}`)
      return scimJson(200, one)
    }
    if (first === 'Bulk' || first === 'Me') throw new ScimError(501, undefined, `/${first} is not supported`)
    if (first === '.search' && parts.length === 1) {
      if (method !== 'POST') throw new ScimError(405, undefined, 'use POST for .search')
      return await this.#searchAll(req, searchParams(parseBody(req)))
    }
    const kind: Kind | undefined = first === 'Users' ? 'User' : first === 'Groups' ? 'Group' : undefined
    if (!kind || parts.length > 2 || third !== undefined) throw new ScimError(404, undefined, `no SCIM endpoint ${req.path}`)
    if (second === undefined) {
      if (method === 'GET') return await this.#list(kind, req, listParams(req.query))
      if (method === 'POST') return await this.#serial(() => this.#create(kind, req))
      throw new ScimError(405, undefined, `${method} is not allowed on /${first}`)
    }
    if (second === '.search') {
      if (method !== 'POST') throw new ScimError(405, undefined, 'use POST for .search')
      return await this.#list(kind, req, searchParams(parseBody(req)))
    }
    switch (method) {
      case 'GET':
        return await this.#get(kind, second, req)
      case 'PUT':
        return await this.#serial(() => this.#replace(kind, second, req))
      case 'PATCH':
        return await this.#serial(() => this.#patch(kind, second, req))
      case 'DELETE':
        return await this.#serial(() => this.#delete(kind, second, req))
      default:
        throw new ScimError(405, undefined, `${method} is not allowed on /${first}/{id}`)
    }
  }

  #readOnly(method: string, value: unknown): ScimResponse {
    if (method !== 'GET') throw new ScimError(405, undefined, `${method} is not allowed here`)
    return scimJson(200, value)
  }

  /**
   * One write at a time, here and across every instance and worker on the same databroker (the
   * `scim-write` lease): a uniqueness check and its write cannot interleave with another's.
   */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const locked = (): Promise<T> => this.#underLease(fn)
    const run = this.#writes.then(locked, locked)
    this.#writes = run.catch(() => undefined)
    return run
  }

  async #underLease<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + WRITE_LEASE_WAIT_MS
    let lease: string | undefined
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      lease = await this.#store.acquireLease(WRITE_LEASE, WRITE_LEASE_MS)
      if (lease !== undefined) break
      if (Date.now() > deadline) throw new ScimError(503, undefined, 'Another SCIM write is taking too long; retry the request.')
      await new Promise((r) => setTimeout(r, delay))
    }
    try {
      return await fn()
    } finally {
      await this.#store.releaseLease(WRITE_LEASE, lease).catch(() => undefined)
    }
  }

  async #record(kind: Kind, id: string): Promise<DataRecord> {
    const r = await this.#store.get(KINDS[kind].type, id)
    const data = r?.data as { source?: unknown } | undefined
    if (!r || data?.source !== 'scim') throw new ScimError(404, undefined, `${kind} ${JSON.stringify(id)} not found`)
    return r
  }

  async #get(kind: Kind, id: string, req: ScimRequest): Promise<ScimResponse> {
    const record = await this.#record(kind, id)
    const resource = await this.#present(kind, record, req.baseUrl)
    const etag = String((resource['meta'] as Json)['version'])
    if (etagMatches(header(req, 'if-none-match'), etag)) return { status: 304, headers: { etag }, body: '' }
    return scimJson(200, project(resource, req.query.get('attributes'), req.query.get('excludedAttributes')), { etag })
  }

  async #list(kind: Kind, req: ScimRequest, params: ListParams): Promise<ScimResponse> {
    const info = KINDS[kind]
    let filter: Filter | undefined
    if (params.filter !== undefined) {
      try {
        filter = parseFilter(params.filter)
      } catch (err) {
        throw new ScimError(400, 'invalidFilter', `filter: ${err instanceof FilterError ? err.message : String(err)}`)
      }
    }
    // `userName eq`, `externalId eq` and `displayName eq` (what Okta and Entra ID ask before
    // creating) are looked up by field; anything else is evaluated on every resource of the kind.
    const eq = filter ? simpleEquality(filter) : undefined
    const storeFilter: Record<string, string> = { source: 'scim' }
    const key = eq?.path.toLowerCase()
    if (eq && kind === 'User' && key === 'username') storeFilter['userNameKey'] = eq.value.toLowerCase()
    else if (eq && key === 'externalid') storeFilter['externalId'] = eq.value
    else if (eq && kind === 'Group' && key === 'displayname') storeFilter['nameKey'] = eq.value.toLowerCase()
    else if (eq && key === 'id') storeFilter['id'] = eq.value
    const { records } = await this.#store.query({ type: info.type, filter: storeFilter })
    const groupsOf = kind === 'User' ? await this.#groupIndex() : undefined
    const all = records.map((r) => this.#resource(kind, r, req.baseUrl, groupsOf))
    const hits = filter ? all.filter((r) => matches(filter, r)) : all
    const start = params.startIndex
    const page = hits.slice(start - 1, start - 1 + params.count)
    return scimJson(200, {
      schemas: [LIST_SCHEMA],
      totalResults: hits.length,
      startIndex: start,
      itemsPerPage: page.length,
      Resources: page.map((r) => project(r, params.attributes, params.excludedAttributes)),
    })
  }

  /** `POST /.search` at the root: Users and Groups together (RFC 7644 §3.4.3). */
  async #searchAll(req: ScimRequest, params: ListParams): Promise<ScimResponse> {
    const everything = { ...params, startIndex: 1, count: MAX_RESULTS * 1000 }
    const parts: Json[] = []
    for (const kind of ['User', 'Group'] as const) {
      const answer = JSON.parse((await this.#list(kind, req, everything)).body) as { Resources: Json[] }
      parts.push(...answer.Resources)
    }
    const page = parts.slice(params.startIndex - 1, params.startIndex - 1 + params.count)
    return scimJson(200, { schemas: [LIST_SCHEMA], totalResults: parts.length, startIndex: params.startIndex, itemsPerPage: page.length, Resources: page })
  }

  async #create(kind: Kind, req: ScimRequest): Promise<ScimResponse> {
    const body = parseBody(req)
    const clean = await this.#validate(kind, body, undefined)
    const now = this.#now().toISOString()
    const id = randomUUID()
    const data = this.#toRecord(kind, id, clean, now, now)
    await this.#store.put([{ type: KINDS[kind].type, id, data }])
    this.#logger.info({ requestId: req.requestId, resource: kind, id, operation: 'create' }, 'scim write')
    const resource = await this.#present(kind, { data } as DataRecord, req.baseUrl)
    const meta = resource['meta'] as Json
    return scimJson(201, resource, { location: String(meta['location']), etag: String(meta['version']) })
  }

  async #replace(kind: Kind, id: string, req: ScimRequest): Promise<ScimResponse> {
    const record = await this.#record(kind, id)
    const current = (record.data as { scim: Json }).scim
    checkIfMatch(req, current)
    const body = parseBody(req)
    const clean = await this.#validate(kind, body, id)
    return await this.#write(kind, id, clean, current, req, 'replace')
  }

  async #patch(kind: Kind, id: string, req: ScimRequest): Promise<ScimResponse> {
    const record = await this.#record(kind, id)
    const current = (record.data as { scim: Json }).scim
    checkIfMatch(req, current)
    const body = parseBody(req)
    const schemasOf = getAttr(body, 'schemas')
    if (!Array.isArray(schemasOf) || !schemasOf.includes(PATCH_SCHEMA)) throw new ScimError(400, 'invalidValue', `schemas: expected [${JSON.stringify(PATCH_SCHEMA)}]`)
    // The id is in the resource a client patches (Okta repeats it in path-less replaces).
    const withoutMeta: Json = { ...current, id }
    delete withoutMeta['meta']
    const patched = applyPatch(withoutMeta, getAttr(body, 'Operations'), KINDS[kind].schema, kind === 'User' ? [ENTERPRISE_USER_SCHEMA] : [])
    const clean = await this.#validate(kind, patched, id, kind === 'Group' ? new Set(memberIdsOf(current)) : undefined)
    return await this.#write(kind, id, clean, current, req, 'patch')
  }

  async #write(kind: Kind, id: string, clean: Json, current: Json, req: ScimRequest, operation: string): Promise<ScimResponse> {
    const stamp = (current['meta'] as Json | undefined)?.['created']
    const created = typeof stamp === 'string' ? stamp : this.#now().toISOString()
    const data = this.#toRecord(kind, id, clean, created, this.#now().toISOString())
    await this.#store.put([{ type: KINDS[kind].type, id, data }])
    this.#logger.info({ requestId: req.requestId, resource: kind, id, operation }, 'scim write')
    const resource = await this.#present(kind, { data } as DataRecord, req.baseUrl)
    return scimJson(200, resource, { etag: String((resource['meta'] as Json)['version']) })
  }

  async #delete(kind: Kind, id: string, req: ScimRequest): Promise<ScimResponse> {
    const record = await this.#record(kind, id)
    checkIfMatch(req, (record.data as { scim: Json }).scim)
    // A deleted user or group leaves every group it was a member of (one batch).
    const groups = await this.#store.query({ type: DIRECTORY_GROUP_TYPE, filter: { source: 'scim' } })
    const updates: RecordInput[] = []
    for (const g of groups.records) {
      const data = g.data as DirectoryGroupRecord & { scim: Json }
      if (!data.memberIds.includes(id) && !(data.nestedGroupIds ?? []).includes(id)) continue
      const members = (Array.isArray(data.scim['members']) ? data.scim['members'] : []).filter((m) => !(isObject(m) && m['value'] === id))
      const scim = withVersion({ ...data.scim, members, meta: { ...(data.scim['meta'] as Json), lastModified: this.#now().toISOString() } })
      const nestedGroupIds = (data.nestedGroupIds ?? []).filter((m) => m !== id)
      updates.push({ type: DIRECTORY_GROUP_TYPE, id: g.id, data: { ...data, memberIds: data.memberIds.filter((m) => m !== id), nestedGroupIds, scim } })
    }
    // The resource goes first: if the store fails between the two, a group names a member that
    // no longer exists (ignored by the directory copy), never a deleted user still in place.
    await this.#store.delete(KINDS[kind].type, id)
    if (updates.length > 0) await this.#store.put(updates)
    this.#logger.info({ requestId: req.requestId, resource: kind, id, operation: 'delete' }, 'scim write')
    return { status: 204, headers: {}, body: '' }
  }

  /**
   * The resource as stored: known attributes only, names in their canonical spelling, types
   * checked. `previousMembers`: members a group already has (a PATCH checks only new ones).
   */
  async #validate(kind: Kind, body: unknown, id: string | undefined, previousMembers?: ReadonlySet<string>): Promise<Json> {
    if (!isObject(body)) throw new ScimError(400, 'invalidSyntax', 'expected a JSON object')
    const info = KINDS[kind]
    const declared = getAttr(body, 'schemas')
    if (declared !== undefined) {
      if (!Array.isArray(declared) || !declared.every((s) => typeof s === 'string')) throw new ScimError(400, 'invalidValue', 'schemas: expected a list of schema URNs')
      const allowed = kind === 'User' ? [USER_SCHEMA, ENTERPRISE_USER_SCHEMA] : [GROUP_SCHEMA]
      const unknown = declared.find((s) => !allowed.some((a) => a.toLowerCase() === s.toLowerCase()))
      if (unknown !== undefined) throw new ScimError(400, 'invalidValue', `schemas: ${JSON.stringify(unknown)} is not a schema of ${info.endpoint} (expected ${allowed.join(', ')})`)
      if (!declared.some((s) => s.toLowerCase() === info.schema.toLowerCase())) throw new ScimError(400, 'invalidValue', `schemas: must include ${info.schema}`)
    } else if (id === undefined) {
      throw new ScimError(400, 'invalidValue', `schemas: required (${info.schema})`)
    }
    const out: Json = { schemas: [info.schema] }
    const extId = getAttr(body, 'externalId')
    if (extId !== undefined && extId !== null) {
      if (typeof extId !== 'string') throw new ScimError(400, 'invalidValue', 'externalId: expected text')
      out['externalId'] = extId
    }
    copyAttributes(body, info.attributes, out, '')
    if (kind === 'User') {
      const ext = getAttr(body, ENTERPRISE_USER_SCHEMA)
      if (ext !== undefined && ext !== null) {
        if (!isObject(ext)) throw new ScimError(400, 'invalidValue', `${ENTERPRISE_USER_SCHEMA}: expected an object`)
        const e: Json = {}
        copyAttributes(ext, ENTERPRISE_ATTRIBUTES, e, `${ENTERPRISE_USER_SCHEMA}:`)
        out[ENTERPRISE_USER_SCHEMA] = e
        ;(out['schemas'] as string[]).push(ENTERPRISE_USER_SCHEMA)
      }
      delete out['groups']
      const userName = out['userName']
      if (typeof userName !== 'string' || userName.trim() === '') throw new ScimError(400, 'invalidValue', 'userName: required, non-empty text')
      const clash = await this.#store.query({ type: DIRECTORY_USER_TYPE, filter: { userNameKey: userName.toLowerCase() } })
      if (clash.records.some((r) => r.id !== id)) throw new ScimError(409, 'uniqueness', `userName ${JSON.stringify(userName)} is already in use`)
    } else {
      const name = out['displayName']
      if (typeof name !== 'string' || name.trim() === '') throw new ScimError(400, 'invalidValue', 'displayName: required, non-empty text')
      const members = Array.isArray(out['members']) ? (out['members'] as Json[]) : []
      const seen = new Set<string>()
      const kept: Json[] = []
      for (const [i, m] of members.entries()) {
        if (typeof m['value'] !== 'string' || m['value'] === '') throw new ScimError(400, 'invalidValue', `members[${i}].value: required, a User or Group id`)
        if (seen.has(m['value'])) continue
        seen.add(m['value'])
        kept.push(m)
      }
      const fresh = [...seen].filter((v) => !previousMembers?.has(v))
      if (id !== undefined && fresh.includes(id)) throw new ScimError(400, 'invalidValue', 'members: a group cannot be a member of itself')
      const missing = await this.#missingMembers(fresh)
      if (missing.length > 0) throw new ScimError(400, 'invalidValue', `members: no User or Group ${missing.slice(0, 5).map((m) => JSON.stringify(m)).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`)
      out['members'] = kept
    }
    return out
  }

  async #missingMembers(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return []
    if (ids.length <= 50) {
      const missing: string[] = []
      for (const v of ids) {
        if (!(await this.#store.get(DIRECTORY_USER_TYPE, v)) && !(await this.#store.get(DIRECTORY_GROUP_TYPE, v))) missing.push(v)
      }
      return missing
    }
    const known = new Set<string>()
    for (const type of [DIRECTORY_USER_TYPE, DIRECTORY_GROUP_TYPE]) for (const r of (await this.#store.query({ type })).records) known.add(r.id)
    return ids.filter((v) => !known.has(v))
  }

  #toRecord(kind: Kind, id: string, clean: Json, created: string, lastModified: string): DirectoryUserRecord | DirectoryGroupRecord {
    const scim = withVersion({ ...clean, meta: { created, lastModified } })
    const externalId = typeof clean['externalId'] === 'string' ? clean['externalId'] : undefined
    if (kind === 'Group') {
      const name = String(clean['displayName'])
      // Members typed "Group" are nested groups; any other member is a user.
      const members = Array.isArray(clean['members']) ? (clean['members'] as Json[]) : []
      const nested = members.filter((m) => m['type'] === 'Group').map((m) => String(m['value']))
      const users = members.filter((m) => m['type'] !== 'Group').map((m) => String(m['value']))
      return { id, source: 'scim', name, nameKey: name.toLowerCase(), memberIds: users, ...(nested.length > 0 ? { nestedGroupIds: nested } : {}), ...(externalId ? { externalId } : {}), scim }
    }
    const userName = String(clean['userName'])
    const emails = Array.isArray(clean['emails']) ? (clean['emails'] as Json[]) : []
    const primary = emails.find((e) => e['primary'] === true) ?? emails[0]
    const email = typeof primary?.['value'] === 'string' ? primary['value'] : userName.includes('@') ? userName : undefined
    const displayName = typeof clean['displayName'] === 'string' ? clean['displayName'] : undefined
    return {
      id,
      source: 'scim',
      active: clean['active'] !== false,
      userName,
      userNameKey: userName.toLowerCase(),
      // The provisioning identity provider is the organisation's authority on its users' emails.
      ...(email ? { email, emailVerified: true } : {}),
      ...(displayName ? { displayName } : {}),
      ...(externalId ? { externalId } : {}),
      scim,
    }
  }

  /** Each user's groups (direct), for the read-only `groups` attribute of Users. */
  async #groupIndex(): Promise<Map<string, Json[]>> {
    const index = new Map<string, Json[]>()
    for (const g of (await this.#store.query({ type: DIRECTORY_GROUP_TYPE, filter: { source: 'scim' } })).records) {
      const data = g.data as DirectoryGroupRecord
      for (const m of data.memberIds) {
        const list = index.get(m) ?? []
        list.push({ value: g.id, display: data.name, type: 'direct' })
        index.set(m, list)
      }
    }
    return index
  }

  async #present(kind: Kind, record: DataRecord, baseUrl: string): Promise<Json> {
    return this.#resource(kind, record, baseUrl, kind === 'User' ? await this.#groupIndex() : undefined)
  }

  #resource(kind: Kind, record: DataRecord, baseUrl: string, groupsOf: Map<string, Json[]> | undefined): Json {
    const data = record.data as { id: string; scim: Json }
    const stored = data.scim
    const meta = { resourceType: kind, ...(stored['meta'] as Json), location: `${baseUrl}/${KINDS[kind].endpoint}/${data.id}` }
    const groups = groupsOf?.get(data.id)?.map((g) => ({ ...g, $ref: `${baseUrl}/Groups/${String(g['value'])}` }))
    const members =
      kind === 'Group' && Array.isArray(stored['members'])
        ? (stored['members'] as Json[]).map((m) => (typeof m['$ref'] === 'string' ? m : { ...m, $ref: `${baseUrl}/${m['type'] === 'Group' ? 'Groups' : 'Users'}/${String(m['value'])}` }))
        : undefined
    return { ...stored, id: data.id, ...(members ? { members } : {}), ...(groups && groups.length > 0 ? { groups } : {}), meta }
  }
}

function memberIdsOf(resource: Json): string[] {
  const members = resource['members']
  return Array.isArray(members) ? members.flatMap((m) => (isObject(m) && typeof m['value'] === 'string' ? [m['value']] : [])) : []
}

/** `meta.version`: a weak ETag over the resource's content. */
function withVersion(resource: Json): Json {
  const { meta, ...content } = resource
  const digest = createHash('sha256').update(JSON.stringify(content)).digest('base64url').slice(0, 20)
  return { ...content, meta: { ...(meta as Json), version: `W/"${digest}"` } }
}

function etagMatches(headerValue: string | undefined, etag: string): boolean {
  if (headerValue === undefined) return false
  if (headerValue.trim() === '*') return true
  const bare = (t: string): string => t.trim().replace(/^W\//, '')
  return headerValue.split(',').some((t) => bare(t) === bare(etag))
}

function checkIfMatch(req: ScimRequest, current: Json): void {
  const wanted = header(req, 'if-match')
  if (wanted === undefined) return
  const stored = (current['meta'] as Json | undefined)?.['version']
  const version = typeof stored === 'string' ? stored : ''
  if (!etagMatches(wanted, version)) throw new ScimError(412, undefined, `If-Match: the resource has changed (its version is ${version})`)
}

function parseBody(req: ScimRequest): unknown {
  if (req.body.length === 0) throw new ScimError(400, 'invalidSyntax', 'expected a JSON body')
  try {
    return JSON.parse(req.body.toString('utf8'))
  } catch {
    throw new ScimError(400, 'invalidSyntax', 'the body is not valid JSON')
  }
}

/** Booleans arrive as strings from Entra ID ("True", "False"). */
function asBoolean(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true'
  return undefined
}

/** Copies the attributes of a schema from `body`, canonical names, checked types; others are dropped. */
function copyAttributes(body: Json, attributes: ReadonlyArray<Record<string, unknown>>, out: Json, prefix: string): void {
  for (const a of attributes) {
    const name = String(a['name'])
    if (a['mutability'] === 'readOnly') continue
    const v = getAttr(body, name)
    if (v === undefined || v === null) continue
    out[name] = checkValue(v, a, `${prefix}${name}`)
  }
}

function checkValue(v: unknown, a: Record<string, unknown>, path: string): unknown {
  if (a['multiValued'] === true) {
    const list = Array.isArray(v) ? v : [v]
    return list.map((item, i) => checkSingle(item, a, `${path}[${i}]`))
  }
  return checkSingle(v, a, path)
}

function checkSingle(v: unknown, a: Record<string, unknown>, path: string): unknown {
  switch (a['type']) {
    case 'string':
    case 'reference':
      if (typeof v !== 'string') throw new ScimError(400, 'invalidValue', `${path}: expected text`)
      return v
    case 'boolean': {
      const b = asBoolean(v)
      if (b === undefined) throw new ScimError(400, 'invalidValue', `${path}: expected true or false`)
      return b
    }
    case 'complex': {
      if (!isObject(v)) throw new ScimError(400, 'invalidValue', `${path}: expected an object`)
      const out: Json = {}
      for (const s of (a['subAttributes'] as Array<Record<string, unknown>> | undefined) ?? []) {
        const name = String(s['name'])
        const sv = getAttr(v, name)
        if (sv === undefined || sv === null) continue
        if (name === 'display' && a['name'] === 'members') continue
        out[name] = checkSingle(sv, s, `${path}.${name}`)
      }
      return out
    }
    default:
      return v
  }
}

interface ListParams {
  readonly filter: string | undefined
  readonly startIndex: number
  readonly count: number
  readonly attributes: string | null
  readonly excludedAttributes: string | null
}

function intParam(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined
  const n = typeof value === 'number' ? value : Number(value)
  if (!Number.isInteger(n)) throw new ScimError(400, 'invalidValue', `${name}: expected an integer`)
  return n
}

function pageOf(startIndex: number | undefined, count: number | undefined): { startIndex: number; count: number } {
  // RFC 7644 §3.4.2.4: a startIndex below 1 is 1; a negative count is 0; the server caps count.
  return { startIndex: Math.max(1, startIndex ?? 1), count: Math.min(MAX_RESULTS, Math.max(0, count ?? MAX_RESULTS)) }
}

function listParams(q: URLSearchParams): ListParams {
  if (q.has('sortBy')) throw new ScimError(400, 'invalidValue', 'sortBy: sorting is not supported (ServiceProviderConfig sort.supported is false)')
  return {
    filter: q.get('filter') ?? undefined,
    ...pageOf(intParam(q.get('startIndex'), 'startIndex'), intParam(q.get('count'), 'count')),
    attributes: q.get('attributes'),
    excludedAttributes: q.get('excludedAttributes'),
  }
}

function searchParams(body: unknown): ListParams {
  if (!isObject(body)) throw new ScimError(400, 'invalidSyntax', 'expected a SearchRequest object')
  const list = (v: unknown): string | null => (Array.isArray(v) ? v.join(',') : typeof v === 'string' ? v : null)
  const filter = getAttr(body, 'filter')
  if (filter !== undefined && typeof filter !== 'string') throw new ScimError(400, 'invalidFilter', 'filter: expected text')
  return {
    filter,
    ...pageOf(intParam(getAttr(body, 'startIndex'), 'startIndex'), intParam(getAttr(body, 'count'), 'count')),
    attributes: list(getAttr(body, 'attributes')),
    excludedAttributes: list(getAttr(body, 'excludedAttributes')),
  }
}

/** `attributes` / `excludedAttributes` (top-level names; `id`, `schemas` and `meta` always stay). */
function project(resource: Json, attributes: string | null, excluded: string | null): Json {
  const names = (text: string): Set<string> => new Set(text.split(',').map((s) => s.trim().replace(/^urn:ietf:params:scim:schemas:core:2\.0:(User|Group):/i, '').split('.')[0]?.toLowerCase() ?? '').filter((s) => s !== ''))
  const always = new Set(['id', 'schemas', 'meta'])
  if (attributes) {
    const keep = names(attributes)
    return Object.fromEntries(Object.entries(resource).filter(([k]) => always.has(k) || keep.has(k.toLowerCase())))
  }
  if (excluded) {
    const drop = names(excluded)
    return Object.fromEntries(Object.entries(resource).filter(([k]) => always.has(k) || !drop.has(k.toLowerCase())))
  }
  return resource
}
