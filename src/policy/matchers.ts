/**
 * Matchers (Pomerium docs: Matchers), compiled into predicates.
 *
 * String matcher: `{is, not, starts_with, ends_with, contains, in, not_in}`, operators AND-ed; a
 * bare string means `is`. String-list matcher (claims, groups): `{has, is, exclude}`, AND-ed; a
 * bare scalar means `has`; `is` requires a one-element list. Comparisons are exact; criteria that
 * compare case-insensitively pass a `canon` function applied to the operands here and to the
 * input by the criterion.
 */
import type { CompileContext } from './criteria/types.js'
import { isPlainObject, typeName } from './parse.js'

export type StringPredicate = (value: string) => boolean
/** Takes the raw value: a list, a scalar (a one-element list) or undefined/null (an empty list). */
export type ListPredicate = (value: unknown) => boolean

export interface StringMatcherOptions {
  /** Applied to every operand (say, NFKC and lower case). */
  readonly canon?: (operand: string) => string
  /** Refuse `is`/`not`/`in`/`not_in` operands with leading or trailing whitespace (they could never match). */
  readonly refusePadded?: boolean
}

const STRING_OPERATORS = ['is', 'not', 'starts_with', 'ends_with', 'contains', 'in', 'not_in'] as const
const LIST_OPERATORS = ['has', 'is', 'exclude'] as const

function padded(s: string): boolean {
  return s !== s.trim()
}

/** Compiles a string matcher; reports errors and returns undefined when the data is invalid. */
export function compileStringMatcher(data: unknown, ctx: CompileContext, options: StringMatcherOptions = {}): StringPredicate | undefined {
  const canon = options.canon ?? ((s: string) => s)
  const ops = isPlainObject(data) ? data : typeof data === 'string' ? { is: data } : undefined
  if (ops === undefined) {
    const hint = Array.isArray(data) ? '; for a list of values write {in: [...]}' : ''
    ctx.error(`expected a string or a string matcher object (${STRING_OPERATORS.join(', ')}), got ${typeName(data)}${hint}`)
    return undefined
  }
  const bare = ops !== data // a bare value: errors are reported at the criterion itself
  const keys = Object.keys(ops)
  if (keys.length === 0) {
    ctx.error(`the matcher has no operators; expected one of ${STRING_OPERATORS.join(', ')}`)
    return undefined
  }
  const predicates: StringPredicate[] = []
  let ok = true
  for (const op of keys) {
    const value = ops[op]
    const at = bare ? undefined : op
    const operand = (v: unknown, where: string | undefined): string | undefined => {
      if (typeof v !== 'string') {
        ctx.error(`expected a string, got ${typeName(v)}${typeof v === 'number' ? ' (quote it)' : ''}`, where)
        return undefined
      }
      if (options.refusePadded === true && (op === 'is' || op === 'not' || op === 'in' || op === 'not_in') && padded(v)) {
        ctx.error(`"${v}" has leading or trailing whitespace, so it could never match`, where)
        return undefined
      }
      return canon(v)
    }
    switch (op) {
      case 'is':
      case 'not':
      case 'starts_with':
      case 'ends_with':
      case 'contains': {
        const s = operand(value, at)
        if (s === undefined) {
          ok = false
          break
        }
        predicates.push(stringPredicate(op, s))
        break
      }
      case 'in':
      case 'not_in': {
        if (!Array.isArray(value)) {
          ctx.error(`${op} expects a list of strings, got ${typeName(value)}`, at)
          ok = false
          break
        }
        const set = new Set<string>()
        value.forEach((v, i) => {
          const s = operand(v, `${op}[${i}]`)
          if (s === undefined) ok = false
          else set.add(s)
        })
        predicates.push(op === 'in' ? (v) => set.has(v) : (v) => !set.has(v))
        break
      }
      default:
        ctx.error(`unknown string matcher operator "${op}": expected ${STRING_OPERATORS.join(', ')}`, op)
        ok = false
    }
  }
  return ok ? all(predicates) : undefined
}

function stringPredicate(op: 'is' | 'not' | 'starts_with' | 'ends_with' | 'contains', s: string): StringPredicate {
  switch (op) {
    case 'is':
      return (v) => v === s
    case 'not':
      return (v) => v !== s
    case 'starts_with':
      return (v) => v.startsWith(s)
    case 'ends_with':
      return (v) => v.endsWith(s)
    case 'contains':
      return (v) => v.includes(s)
  }
}

function all<T>(predicates: readonly ((v: T) => boolean)[]): (v: T) => boolean {
  if (predicates.length === 1) return predicates[0] as (v: T) => boolean
  return (v) => {
    for (let i = 0; i < predicates.length; i++) if (!(predicates[i] as (v: T) => boolean)(v)) return false
    return true
  }
}

type Scalar = string | number | boolean

function isScalar(v: unknown): v is Scalar {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean'
}

/** Compiles a string-list matcher; reports errors and returns undefined when the data is invalid. */
export function compileListMatcher(data: unknown, ctx: CompileContext): ListPredicate | undefined {
  const ops = isPlainObject(data) ? data : isScalar(data) ? { has: data } : undefined
  if (ops === undefined) {
    const hint = Array.isArray(data) ? '; to accept any of several values write one criterion per value in an `or`' : ''
    ctx.error(`expected a value or a list matcher object (${LIST_OPERATORS.join(', ')}), got ${typeName(data)}${hint}`)
    return undefined
  }
  const bare = ops !== data
  const keys = Object.keys(ops)
  if (keys.length === 0) {
    ctx.error(`the matcher has no operators; expected one of ${LIST_OPERATORS.join(', ')}`)
    return undefined
  }
  const predicates: ListPredicate[] = []
  let ok = true
  for (const op of keys) {
    const value = ops[op]
    if (op !== 'has' && op !== 'is' && op !== 'exclude') {
      ctx.error(`unknown list matcher operator "${op}": expected ${LIST_OPERATORS.join(', ')}`, op)
      ok = false
      continue
    }
    if (!isScalar(value)) {
      ctx.error(`expected a string, number or boolean, got ${typeName(value)}`, bare ? undefined : op)
      ok = false
      continue
    }
    predicates.push(listPredicate(op, value))
  }
  return ok ? all(predicates) : undefined
}

function listPredicate(op: 'has' | 'is' | 'exclude', x: Scalar): ListPredicate {
  switch (op) {
    case 'has':
      return (v) => (Array.isArray(v) ? v.includes(x) : v === x)
    case 'is':
      return (v) => (Array.isArray(v) ? v.length === 1 && v[0] === x : v === x)
    case 'exclude':
      return (v) => (Array.isArray(v) ? !v.includes(x) : v !== x)
  }
}
