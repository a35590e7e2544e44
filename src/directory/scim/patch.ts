/**
 * SCIM PATCH (RFC 7644 §3.5.2) on a resource held as plain JSON: `add`, `remove`, `replace`, with
 * or without a path; paths `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub` and extension
 * URNs (`urn:…:enterprise:2.0:User:department`). The dialects providers actually send are
 * accepted: Entra ID's capitalised `op` ("Replace"), its boolean strings ("False") and its member
 * removal by value list; Okta's path-less `replace` with an object value and its
 * `members[value eq "…"]` removal. The patch is applied to a copy: any failed operation leaves
 * the stored resource untouched.
 */
import { FilterError, getAttr, matches, parseFilter } from './filter.js'
import type { Filter } from './filter.js'
import { ScimError } from './errors.js'

type Json = Record<string, unknown>

interface PatchPath {
  /** The attribute (top level, or the attribute inside an extension object). */
  readonly attr: string
  /** The extension URN the attribute lives under, if any. */
  readonly urn?: string | undefined
  readonly filter?: Filter | undefined
  readonly sub?: string | undefined
}

const READ_ONLY = new Set(['id', 'meta', 'groups'])
/** Names that would reach an object's prototype chain rather than an attribute. */
const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype'])

function checkName(name: string, index: number): void {
  if (FORBIDDEN.has(name.toLowerCase())) throw new ScimError(400, 'invalidPath', `Operations[${index}]: ${JSON.stringify(name)} is not an attribute`)
}

/** Whether a value (at any depth) carries a key that would reach a prototype. */
function hasForbiddenKey(value: unknown, depth = 0): boolean {
  if (depth > 32 || typeof value !== 'object' || value === null) return false
  for (const [k, v] of Object.entries(value)) if (FORBIDDEN.has(k.toLowerCase()) || hasForbiddenKey(v, depth + 1)) return true
  return false
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The real key of `name` in `obj` (attribute names are case-insensitive), or `name`. */
function keyOf(obj: Json, name: string): string {
  const lower = name.toLowerCase()
  return Object.keys(obj).find((k) => k.toLowerCase() === lower) ?? name
}

export function parsePatchPath(text: string, coreUrn: string, extensions: readonly string[] = []): PatchPath {
  let rest = text.trim()
  let urn: string | undefined
  // The bare URN of an extension: the whole extension object.
  const whole = extensions.find((e) => e.toLowerCase() === rest.toLowerCase())
  if (whole) return { attr: whole }
  if (rest.toLowerCase().startsWith(`${coreUrn.toLowerCase()}:`)) {
    rest = rest.slice(coreUrn.length + 1)
  } else if (rest.toLowerCase().startsWith('urn:')) {
    const i = rest.lastIndexOf(':')
    urn = rest.slice(0, i)
    rest = rest.slice(i + 1)
  }
  const m = /^([A-Za-z][\w$-]*)(?:\[(.*)\])?(?:\.([A-Za-z][\w$-]*))?$/s.exec(rest)
  if (!m) throw new ScimError(400, 'invalidPath', `the path ${JSON.stringify(text)} is not a SCIM attribute path`)
  let filter: Filter | undefined
  if (m[2] !== undefined) {
    try {
      filter = parseFilter(m[2])
    } catch (err) {
      throw new ScimError(400, 'invalidPath', `the path's filter: ${err instanceof FilterError ? err.message : String(err)}`)
    }
  }
  let attr = m[1] as string
  let sub = m[3]
  // `name.givenName` without a filter: attribute `name`, sub-attribute `givenName`.
  if (!filter && sub === undefined && attr.includes('.')) [attr, sub] = attr.split('.', 2) as [string, string]
  return { attr, urn, filter, sub }
}

/** Applies the operations of a PatchOp body to a copy of `resource`. @throws {ScimError} */
export function applyPatch(resource: Json, operations: unknown, coreUrn: string, extensions: readonly string[] = []): Json {
  if (!Array.isArray(operations) || operations.length === 0) throw new ScimError(400, 'invalidSyntax', 'Operations: expected a non-empty list')
  const out = structuredClone(resource)
  for (const [i, raw] of operations.entries()) {
    if (!isObject(raw)) throw new ScimError(400, 'invalidSyntax', `Operations[${i}]: expected an object`)
    const opValue = getAttr(raw, 'op')
    const op = typeof opValue === 'string' ? opValue.toLowerCase() : ''
    if (op !== 'add' && op !== 'remove' && op !== 'replace') throw new ScimError(400, 'invalidSyntax', `Operations[${i}].op: expected add, remove or replace`)
    const pathText = getAttr(raw, 'path')
    const value = getAttr(raw, 'value')
    if (pathText === undefined || pathText === '') {
      if (op === 'remove') throw new ScimError(400, 'noTarget', `Operations[${i}]: remove needs a path`)
      if (!isObject(value)) throw new ScimError(400, 'invalidValue', `Operations[${i}].value: expected an object when there is no path`)
      for (const [k, v] of Object.entries(value)) {
        // Entra ID sends `{"name.givenName": "x"}` and extension attributes as keys.
        if (k.includes('.') || k.includes('[') || (k.toLowerCase().startsWith('urn:') && !isObject(v))) applyOne(out, op, parsePatchPath(k, coreUrn, extensions), v, i)
        else if (k.toLowerCase().startsWith('urn:') && isObject(v)) for (const [ek, ev] of Object.entries(v)) applyOne(out, op, { attr: ek, urn: k }, ev, i)
        else applyOne(out, op, { attr: k }, v, i)
      }
      continue
    }
    if (typeof pathText !== 'string') throw new ScimError(400, 'invalidPath', `Operations[${i}].path: expected text`)
    applyOne(out, op, parsePatchPath(pathText, coreUrn, extensions), value, i)
  }
  return out
}

function applyOne(resource: Json, op: 'add' | 'remove' | 'replace', path: PatchPath, value: unknown, index: number): void {
  checkName(path.attr, index)
  if (path.urn) checkName(path.urn, index)
  if (path.sub) checkName(path.sub, index)
  if (hasForbiddenKey(value)) throw new ScimError(400, 'invalidValue', `Operations[${index}].value: a key is not an attribute name`)
  if (!path.urn && READ_ONLY.has(path.attr.toLowerCase())) {
    // Providers echo `id` back in replace bodies; an unchanged value is harmless.
    if (path.attr.toLowerCase() === 'id' && value === resource['id']) return
    throw new ScimError(400, 'mutability', `Operations[${index}]: ${path.attr} is read-only`)
  }
  let parent: Json = resource
  if (path.urn) {
    const k = keyOf(resource, path.urn)
    if (!isObject(resource[k])) {
      if (op === 'remove') return
      resource[k] = {}
    }
    parent = resource[k] as Json
  }
  const key = keyOf(parent, path.attr)
  const current = parent[key]

  if (path.filter) {
    if (!Array.isArray(current)) {
      if (op === 'remove') return
      throw new ScimError(400, 'noTarget', `Operations[${index}]: ${path.attr} has no values to select`)
    }
    const filter = path.filter
    const hits = current.filter((item) => matches(filter, item))
    if (op === 'remove') {
      if (path.sub) {
        for (const h of hits) if (isObject(h)) delete h[keyOf(h, path.sub)]
      } else {
        parent[key] = current.filter((item) => !hits.includes(item))
      }
      return
    }
    if (hits.length === 0) {
      // RFC 7644: replace with a filter that matches nothing is `noTarget`; Entra ID adds a
      // value through this form (`emails[type eq "work"].value`), so add one then.
      if (op === 'replace' && !path.sub) throw new ScimError(400, 'noTarget', `Operations[${index}]: no value of ${path.attr} matches the filter`)
      const seed = equalitySeed(filter)
      const item: Json = { ...seed, ...(path.sub ? { [path.sub]: value } : isObject(value) ? value : { value }) }
      current.push(item)
      return
    }
    for (const h of hits) {
      if (!isObject(h)) continue
      if (path.sub) h[keyOf(h, path.sub)] = value
      else if (isObject(value)) Object.assign(h, value)
    }
    return
  }

  if (path.sub) {
    if (op === 'remove') {
      if (isObject(current)) delete current[keyOf(current, path.sub)]
      else if (Array.isArray(current)) for (const c of current) if (isObject(c)) delete c[keyOf(c, path.sub)]
      return
    }
    if (Array.isArray(current)) {
      for (const c of current) if (isObject(c)) c[keyOf(c, path.sub)] = value
      return
    }
    const obj = isObject(current) ? current : {}
    obj[keyOf(obj, path.sub)] = value
    parent[key] = obj
    return
  }

  if (op === 'remove') {
    // Entra ID removes members by listing them: `{"op":"Remove","path":"members","value":[{"value":"id"}]}`.
    if (Array.isArray(current) && Array.isArray(value) && value.length > 0) {
      const drop = new Set(value.map((v) => (isObject(v) ? String(getAttr(v, 'value')) : String(v))))
      parent[key] = current.filter((item) => !drop.has(String(isObject(item) ? getAttr(item, 'value') : item)))
    } else {
      delete parent[key]
    }
    return
  }
  if (op === 'add' && Array.isArray(current)) {
    const additions = Array.isArray(value) ? value : [value]
    const identity = (v: unknown): string => (isObject(v) && getAttr(v, 'value') !== undefined ? `v:${String(getAttr(v, 'value'))}` : JSON.stringify(v))
    const have = new Set(current.map(identity))
    for (const a of additions) {
      if (!have.has(identity(a))) {
        current.push(a)
        have.add(identity(a))
      }
    }
    return
  }
  if (op === 'add' && isObject(current) && isObject(value)) {
    Object.assign(current, value)
    return
  }
  parent[key] = value
}

/** `type eq "work"` → `{type: "work"}`, so an added value carries what selected it. */
function equalitySeed(filter: Filter): Json {
  if (filter.kind === 'compare' && filter.op === 'eq') return { [filter.path]: filter.value }
  if (filter.kind === 'and') return { ...equalitySeed(filter.left), ...equalitySeed(filter.right) }
  return {}
}
