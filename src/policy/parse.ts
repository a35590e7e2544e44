/**
 * Parses a PPL document (already decoded from YAML/JSON) into clauses: one per operator of each
 * `allow`/`deny` object. Only the structure is checked here; what each criterion's data means is
 * checked when the criterion is compiled (compile.ts), so parse and compile stay separate as in
 * Pomerium's parser/generator split.
 *
 * ```
 * policy      := rule-object | [ rule-object, ... ]
 * rule-object := { ("allow" | "deny"): conditionals, ... }     both keys may appear in one object
 * conditionals:= { "and"?: [criterion...], "or"?: [...], "not"?: [...], "nor"?: [...] }
 *                ("action" is tolerated and ignored, as Pomerium does)
 * criterion   := { "<name>[/<subpath>]": <data> }               exactly one key
 * ```
 */
import type { PolicyError } from './types.js'

export type Action = 'allow' | 'deny'
export type Operator = 'and' | 'or' | 'not' | 'nor'

export const OPERATORS: readonly Operator[] = ['and', 'or', 'not', 'nor']

export interface CriterionNode {
  /** The key as written: `claim/groups`. */
  readonly key: string
  /** The part before the first `/`. */
  readonly name: string
  /** The part after the first `/`, or undefined when there is none. */
  readonly subPath: string | undefined
  readonly data: unknown
  /** Key path of the criterion's data (`policy.allow.and[1].email`). */
  readonly path: string
  /**
   * For criteria generated from legacy route fields: errors are reported at this key (say
   * `routes[2].allowed_users[0]`) rather than inside PPL the operator never wrote.
   */
  readonly fixedPath?: string
}

export interface ClauseNode {
  readonly action: Action
  readonly operator: Operator
  readonly criteria: readonly CriterionNode[]
  readonly path: string
}

/** Joins a key onto a key path. */
export function joinPath(base: string, key: string): string {
  return base === '' ? key : `${base}.${key}`
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

/** Describes a value's type for error messages. */
export function typeName(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (isPlainObject(value)) return 'an object'
  return `a ${typeof value}`
}

/** Parses a whole document (object or list of objects). Errors are appended to `errors`. */
export function parseDocument(doc: unknown, path: string, errors: PolicyError[]): ClauseNode[] {
  const clauses: ClauseNode[] = []
  if (Array.isArray(doc)) {
    doc.forEach((rule, i) => parseRuleObject(rule, `${path}[${i}]`, errors, clauses))
  } else if (isPlainObject(doc)) {
    parseRuleObject(doc, path, errors, clauses)
  } else {
    errors.push({ path, message: `expected a policy object or a list of them, got ${typeName(doc)}` })
  }
  return clauses
}

function parseRuleObject(rule: unknown, path: string, errors: PolicyError[], out: ClauseNode[]): void {
  if (!isPlainObject(rule)) {
    errors.push({ path, message: `expected a rule object ({allow: ...} or {deny: ...}), got ${typeName(rule)}` })
    return
  }
  const keys = Object.keys(rule)
  if (keys.length === 0) errors.push({ path, message: 'expected allow or deny in the rule object' })
  for (const key of keys) {
    const at = joinPath(path, key)
    if (key !== 'allow' && key !== 'deny') {
      errors.push({ path: at, message: `unknown key "${key}": a rule object has only allow and deny` })
      continue
    }
    parseConditionals(key, rule[key], at, errors, out)
  }
}

function parseConditionals(action: Action, body: unknown, path: string, errors: PolicyError[], out: ClauseNode[]): void {
  if (!isPlainObject(body)) {
    errors.push({ path, message: `expected an object of operators (and, or, not, nor), got ${typeName(body)}` })
    return
  }
  for (const key of Object.keys(body)) {
    const at = joinPath(path, key)
    if (key === 'action') continue
    if (!(OPERATORS as readonly string[]).includes(key)) {
      errors.push({ path: at, message: `unknown operator "${key}": expected and, or, not or nor` })
      continue
    }
    const list = body[key]
    if (!Array.isArray(list)) {
      errors.push({ path: at, message: `expected a list of criteria, got ${typeName(list)}` })
      continue
    }
    const criteria: CriterionNode[] = []
    list.forEach((item, i) => {
      const node = parseCriterion(item, `${at}[${i}]`, errors)
      if (node) criteria.push(node)
    })
    // An empty list contributes nothing, neither true nor false, as in Pomerium (the generator
    // skips it). In particular `and: []` does not allow everyone.
    if (criteria.length > 0) out.push({ action, operator: key as Operator, criteria, path: at })
  }
}

/** Parses one `{name[/subpath]: data}` object. `path` is the list element's path. */
export function parseCriterion(item: unknown, path: string, errors: PolicyError[]): CriterionNode | undefined {
  if (!isPlainObject(item)) {
    errors.push({ path, message: `expected a criterion object ({name: data}), got ${typeName(item)}` })
    return undefined
  }
  const keys = Object.keys(item)
  if (keys.length !== 1) {
    errors.push({ path, message: `a criterion object has exactly one key, this one has ${keys.length}${keys.length > 0 ? ` (${keys.join(', ')})` : ''}` })
    return undefined
  }
  const key = keys[0] as string
  const at = joinPath(path, key)
  if ((OPERATORS as readonly string[]).includes(key)) {
    errors.push({ path: at, message: `operators cannot be nested inside a criterion list; write another rule instead (rules are OR-ed)` })
    return undefined
  }
  const slash = key.indexOf('/')
  return {
    key,
    name: slash < 0 ? key : key.slice(0, slash),
    subPath: slash < 0 ? undefined : key.slice(slash + 1),
    data: item[key],
    path: at,
  }
}
