/**
 * SCIM filters (RFC 7644 §3.4.2.2): `attrPath op value`, `attrPath pr`, `and`, `or`, `not (…)`,
 * parentheses and value paths (`emails[type eq "work"]`). Attribute names and string comparisons
 * are case-insensitive (caseExact attributes are compared exactly: `id`, `externalId`,
 * `members.value`). Bounded: a filter longer than {@link MAX_FILTER_LENGTH} characters or nested
 * deeper than {@link MAX_FILTER_DEPTH} is refused (`invalidFilter`), as is anything unparsable.
 */
import { CodedError } from '../../shared/errors.js'

export const MAX_FILTER_LENGTH = 1000
export const MAX_FILTER_DEPTH = 8

type CompareOp = 'eq' | 'ne' | 'co' | 'sw' | 'ew' | 'gt' | 'ge' | 'lt' | 'le'
type Literal = string | number | boolean | null

export type Filter =
  | { readonly kind: 'compare'; readonly path: string; readonly op: CompareOp; readonly value: Literal }
  | { readonly kind: 'present'; readonly path: string }
  | { readonly kind: 'and' | 'or'; readonly left: Filter; readonly right: Filter }
  | { readonly kind: 'not'; readonly inner: Filter }
  | { readonly kind: 'valuePath'; readonly path: string; readonly inner: Filter }

/** A filter that cannot be used; answered as SCIM `invalidFilter`. */
export class FilterError extends CodedError {
  readonly code = 'ERR_SCIM_REQUEST'
}

const OPS = new Set(['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le'])
/** Attributes compared case-exactly (RFC 7643: `caseExact: true`). */
const CASE_EXACT = new Set(['id', 'externalid', 'members.value', 'groups.value', 'meta.version'])

type Token = { t: 'word'; v: string } | { t: 'string'; v: string } | { t: '(' | ')' | '[' | ']' }

function tokenize(text: string): Token[] {
  const out: Token[] = []
  let i = 0
  while (i < text.length) {
    const c = text[i] as string
    if (c === ' ' || c === '\t') {
      i++
    } else if (c === '(' || c === ')' || c === '[' || c === ']') {
      out.push({ t: c })
      i++
    } else if (c === '"') {
      let j = i + 1
      let s = ''
      for (;;) {
        if (j >= text.length) throw new FilterError('unterminated string')
        const d = text[j] as string
        if (d === '\\') {
          const e = text[j + 1]
          if (e === undefined) throw new FilterError('unterminated string')
          s += e === 'n' ? '\n' : e === 't' ? '\t' : e
          j += 2
        } else if (d === '"') {
          break
        } else {
          s += d
          j++
        }
      }
      out.push({ t: 'string', v: s })
      i = j + 1
    } else {
      let j = i
      while (j < text.length && !' \t()[]"'.includes(text[j] as string)) j++
      out.push({ t: 'word', v: text.slice(i, j) })
      i = j
    }
  }
  return out
}

/** Parses a filter. @throws {FilterError} */
export function parseFilter(text: string): Filter {
  if (text.length > MAX_FILTER_LENGTH) throw new FilterError(`the filter is longer than ${MAX_FILTER_LENGTH} characters`)
  const tokens = tokenize(text)
  let pos = 0
  const peekWord = (): string | undefined => {
    const t = tokens[pos]
    return t?.t === 'word' ? t.v.toLowerCase() : undefined
  }
  const expect = (t: ')' | ']'): void => {
    if (tokens[pos]?.t !== t) throw new FilterError(`expected "${t}"`)
    pos++
  }
  const orExpr = (depth: number): Filter => {
    if (depth > MAX_FILTER_DEPTH) throw new FilterError(`the filter is nested deeper than ${MAX_FILTER_DEPTH} levels`)
    let left = andExpr(depth)
    while (peekWord() === 'or') {
      pos++
      left = { kind: 'or', left, right: andExpr(depth) }
    }
    return left
  }
  const andExpr = (depth: number): Filter => {
    let left = unary(depth)
    while (peekWord() === 'and') {
      pos++
      left = { kind: 'and', left, right: unary(depth) }
    }
    return left
  }
  const unary = (depth: number): Filter => {
    if (peekWord() === 'not') {
      pos++
      if (tokens[pos]?.t !== '(') throw new FilterError('expected "(" after not')
      pos++
      const inner = orExpr(depth + 1)
      expect(')')
      return { kind: 'not', inner }
    }
    if (tokens[pos]?.t === '(') {
      pos++
      const inner = orExpr(depth + 1)
      expect(')')
      return inner
    }
    return comparison(depth)
  }
  const comparison = (depth: number): Filter => {
    const t = tokens[pos]
    if (t?.t !== 'word' || !/^[A-Za-z][\w$:.-]*$/.test(t.v)) throw new FilterError('expected an attribute name')
    pos++
    const path = t.v
    if (tokens[pos]?.t === '[') {
      pos++
      const inner = orExpr(depth + 1)
      expect(']')
      // `emails[type eq "work"].value` is not a filter (it is a PATCH path); a filter stops at "]".
      return { kind: 'valuePath', path, inner }
    }
    const op = peekWord()
    if (op === undefined || (op !== 'pr' && !OPS.has(op))) throw new FilterError(`expected an operator after ${path}`)
    pos++
    if (op === 'pr') return { kind: 'present', path }
    const v = tokens[pos]
    if (!v) throw new FilterError(`expected a value after ${path} ${op}`)
    pos++
    let value: Literal
    if (v.t === 'string') value = v.v
    else if (v.t === 'word' && (v.v === 'true' || v.v === 'false')) value = v.v === 'true'
    else if (v.t === 'word' && v.v === 'null') value = null
    else if (v.t === 'word' && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v.v)) value = Number(v.v)
    else throw new FilterError(`expected a quoted string, number, true, false or null after ${path} ${op}`)
    return { kind: 'compare', path, op: op as CompareOp, value }
  }
  const filter = orExpr(0)
  if (pos !== tokens.length) throw new FilterError('unexpected text after the filter')
  return filter
}

/** Attribute names without the schema URN prefix of the core schemas (`urn:…:User:userName` → `userName`). */
function stripUrn(path: string): string {
  const m = /^urn:ietf:params:scim:schemas:core:2\.0:(?:User|Group):(.+)$/i.exec(path)
  return m ? (m[1] as string) : path
}

/** A case-insensitive property read. */
export function getAttr(obj: unknown, name: string): unknown {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined
  const lower = name.toLowerCase()
  for (const [k, v] of Object.entries(obj)) if (k.toLowerCase() === lower) return v
  return undefined
}

/** Values at a dotted path; arrays are flattened (multi-valued attributes). */
function valuesAt(resource: unknown, path: string): unknown[] {
  const full = stripUrn(path)
  // An extension attribute: `urn:…:enterprise:2.0:User:department`.
  const ext = /^(urn:[^\s]+):([^:]+)$/.exec(full)
  let current: unknown[] = ext ? [getAttr(resource, ext[1] as string)] : [resource]
  const parts = ext ? [ext[2] as string] : full.split('.')
  for (const part of parts) {
    const next: unknown[] = []
    for (const c of current) {
      const v = Array.isArray(c) ? c.flatMap((x) => [getAttr(x, part)]) : [getAttr(c, part)]
      for (const x of v) {
        if (Array.isArray(x)) next.push(...(x as unknown[]))
        else if (x !== undefined) next.push(x)
      }
    }
    current = next
  }
  // A multi-valued complex attribute without a sub-attribute compares its `value`s.
  return current.flatMap((v) => (typeof v === 'object' && v !== null && !Array.isArray(v) && 'value' in v ? [getAttr(v, 'value')] : [v]))
}

function compare(a: unknown, op: CompareOp, b: Literal, caseExact: boolean): boolean {
  if (op === 'eq' && b === null) return a === null || a === undefined
  if (typeof a === 'string' && typeof b === 'string') {
    const x = caseExact ? a : a.toLowerCase()
    const y = caseExact ? b : b.toLowerCase()
    switch (op) {
      case 'eq': return x === y
      case 'ne': return x !== y
      case 'co': return x.includes(y)
      case 'sw': return x.startsWith(y)
      case 'ew': return x.endsWith(y)
      case 'gt': return x > y
      case 'ge': return x >= y
      case 'lt': return x < y
      case 'le': return x <= y
    }
  }
  if (typeof a === 'number' && typeof b === 'number') {
    switch (op) {
      case 'eq': return a === b
      case 'ne': return a !== b
      case 'gt': return a > b
      case 'ge': return a >= b
      case 'lt': return a < b
      case 'le': return a <= b
      case 'co':
      case 'sw':
      case 'ew':
        return false
    }
  }
  if (typeof a === 'boolean' && typeof b === 'boolean') return op === 'eq' ? a === b : op === 'ne' ? a !== b : false
  return op === 'ne'
}

/** Whether `resource` matches the filter. */
export function matches(filter: Filter, resource: unknown): boolean {
  switch (filter.kind) {
    case 'and':
      return matches(filter.left, resource) && matches(filter.right, resource)
    case 'or':
      return matches(filter.left, resource) || matches(filter.right, resource)
    case 'not':
      return !matches(filter.inner, resource)
    case 'present': {
      const v = valuesAt(resource, filter.path)
      return v.some((x) => x !== null && x !== '' && !(Array.isArray(x) && x.length === 0))
    }
    case 'valuePath': {
      const raw = getAttr(resource, stripUrn(filter.path))
      const items = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]
      return items.some((item) => matches(filter.inner, item))
    }
    case 'compare': {
      const values = valuesAt(resource, filter.path)
      const exact = CASE_EXACT.has(stripUrn(filter.path).toLowerCase())
      if (filter.op === 'ne') return values.length === 0 || values.every((v) => compare(v, 'ne', filter.value, exact))
      return values.some((v) => compare(v, filter.op, filter.value, exact))
    }
  }
}

/** `attr eq "value"` on one top-level attribute (a lookup the store can answer by index). */
export function simpleEquality(filter: Filter): { path: string; value: string } | undefined {
  return filter.kind === 'compare' && filter.op === 'eq' && typeof filter.value === 'string' && !filter.path.includes('.') ? { path: stripUrn(filter.path), value: filter.value } : undefined
}
