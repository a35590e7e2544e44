/**
 * Compiles parsed clauses into closures, once per configuration.
 *
 * Each criterion becomes a function from the input to an encoded outcome (reason-sets.ts); each
 * operator clause a loop over its criteria; each action an `or` over its clauses. `evaluate`
 * runs those closures and nothing else: it never sees the PPL document, the parser or the
 * criterion registry, and in the steady state it allocates nothing (reason unions and the
 * resulting `Evaluation` objects are memoised per policy).
 *
 * Reason propagation (Pomerium docs: Result & reason propagation): an operator that is true reports the reasons of its true
 * children, one that is false those of its false children; `not` and `nor` invert each child's
 * value and keep its reasons, then merge as `and` and `or`. Every child is evaluated (no
 * short-circuit), because the reasons of all of them are part of the result.
 */
import { deviceTypeOf } from './criteria/device.js'
import { CRITERIA, UNSUPPORTED } from './criteria/index.js'
import type { CompileContext } from './criteria/types.js'
import { isPlainObject, parseDocument } from './parse.js'
import type { Action, ClauseNode, CriterionNode, Operator } from './parse.js'
import { ReasonSets, outcome } from './reason-sets.js'
import { R } from './reasons.js'
import type { CompiledPolicy, CompileResult, CriterionTrace, EvaluateOptions, Evaluation, PolicyError, PolicyInput, RuleTrace } from './types.js'

/** A compiled criterion or clause: input → encoded outcome `(reasonSetId << 1) | value`. */
type Check = (input: PolicyInput) => number

interface CompiledCriterion {
  readonly node: CriterionNode
  readonly check: Check
}

interface CompiledClause {
  readonly action: Action
  readonly operator: Operator
  readonly criteria: readonly CompiledCriterion[]
  readonly check: Check
}

/** `not`/`nor` invert their children; `and`/`not` need every (inverted) child true, `or`/`nor` one. */
const SHAPE: Readonly<Record<Operator, { invert: 0 | 1; all: boolean }>> = {
  and: { invert: 0, all: true },
  or: { invert: 0, all: false },
  not: { invert: 1, all: true },
  nor: { invert: 1, all: false },
}

/** Parses and compiles a standalone PPL document (object or list). */
export function compilePolicy(ppl: unknown, path = ''): CompileResult {
  const errors: PolicyError[] = []
  const source = frozenCopy(ppl)
  const clauses = parseDocument(source, path, errors)
  return buildPolicy(clauses, source, errors)
}

/** Compiles parsed clauses; returns a policy only when no errors were found (`errors` included). */
export function buildPolicy(clauses: readonly ClauseNode[], source: unknown, errors: PolicyError[]): CompileResult {
  const sets = new ReasonSets()
  const compiled: CompiledClause[] = []
  for (const clause of clauses) {
    const criteria: CompiledCriterion[] = []
    for (const node of clause.criteria) {
      const check = compileCriterion(node, sets, errors)
      if (check) criteria.push({ node, check })
    }
    const shape = SHAPE[clause.operator]
    compiled.push({
      action: clause.action,
      operator: clause.operator,
      criteria,
      check: merger(criteria.map((c) => c.check), shape.invert, shape.all, sets),
    })
  }
  if (errors.length > 0) return { errors: unique(errors) }
  const deviceTypes = [...new Set(clauses.flatMap((c) => c.criteria.filter((n) => n.name === 'device').map((n) => deviceTypeOf(n.data))))]
  return { policy: createPolicy(compiled, source, sets, deviceTypes), errors }
}

/** Drops repeated errors (one `allowed_users` entry stands for two criteria with the same problem). */
function unique(errors: readonly PolicyError[]): PolicyError[] {
  const seen = new Set<string>()
  return errors.filter((e) => {
    const key = `${e.path}\n${e.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

function compileCriterion(node: CriterionNode, sets: ReasonSets, errors: PolicyError[]): Check | undefined {
  const report = (path: string, message: string): void => {
    errors.push({ path: node.fixedPath ?? path, message })
  }
  const definition = CRITERIA.get(node.name)
  if (definition === undefined) {
    const why = UNSUPPORTED.get(node.name)
    report(node.path, why === undefined ? `unknown criterion "${node.name}"` : `criterion "${node.name}" is not supported: ${why}`)
    return undefined
  }
  if (definition.subPath === 'none' && node.subPath !== undefined) {
    report(node.path, `${node.name} takes no sub-path (write "${node.name}", not "${node.key}")`)
    return undefined
  }
  const before = errors.length
  const ctx: CompileContext = {
    subPath: node.subPath,
    error: (message, key) => report(key === undefined ? node.path : key.startsWith('[') ? `${node.path}${key}` : `${node.path}.${key}`, message),
  }
  const encoded = definition.outcomes.map((o) => outcome(sets.intern(o.reasons), o.value))
  if (definition.session) {
    const run = definition.compile(node.data, ctx)
    if (!run || errors.length > before) return undefined
    const unauthenticated = outcome(sets.intern([R.userUnauthenticated]), false)
    return (input) => {
      const session = input.session
      return session === undefined ? unauthenticated : (encoded[run(session, input)] as number)
    }
  }
  const run = definition.compile(node.data, ctx)
  if (!run || errors.length > before) return undefined
  return (input) => encoded[run(input)] as number
}

/** Merges children per Pomerium docs: Result & reason propagation; also used to OR the clauses of one action. */
function merger(checks: readonly Check[], invert: 0 | 1, all: boolean, sets: ReasonSets): Check {
  const n = checks.length
  if (n === 0) return () => 0
  return (input) => {
    let trueSet = 0
    let falseSet = 0
    let trues = 0
    for (let i = 0; i < n; i++) {
      const o = (checks[i] as Check)(input)
      if (((o & 1) ^ invert) === 1) {
        trues++
        trueSet = sets.union(trueSet, o >> 1)
      } else {
        falseSet = sets.union(falseSet, o >> 1)
      }
    }
    return (all ? trues === n : trues > 0) ? (trueSet << 1) | 1 : falseSet << 1
  }
}

/** The same merge over outcomes already computed, for traces (the tests check both agree). */
function mergeOutcomes(outcomes: readonly number[], invert: 0 | 1, all: boolean, sets: ReasonSets): number {
  if (outcomes.length === 0) return 0
  let trueSet = 0
  let falseSet = 0
  let trues = 0
  for (const o of outcomes) {
    if (((o & 1) ^ invert) === 1) {
      trues++
      trueSet = sets.union(trueSet, o >> 1)
    } else {
      falseSet = sets.union(falseSet, o >> 1)
    }
  }
  return (all ? trues === outcomes.length : trues > 0) ? (trueSet << 1) | 1 : falseSet << 1
}

function createPolicy(clauses: readonly CompiledClause[], source: unknown, sets: ReasonSets, deviceTypes: readonly string[]): CompiledPolicy {
  const allow = merger(clauses.filter((c) => c.action === 'allow').map((c) => c.check), 0, false, sets)
  const deny = merger(clauses.filter((c) => c.action === 'deny').map((c) => c.check), 0, false, sets)
  const evaluations = new Map<number, Evaluation>()

  // Outcomes are below 2^26 (reason-set ids below 2^25), so the pair key is an exact integer.
  const evaluation = (a: number, d: number): Evaluation => {
    const key = a * 0x4000000 + d
    let e = evaluations.get(key)
    if (e === undefined) {
      e = Object.freeze({ allow: (a & 1) === 1, deny: (d & 1) === 1, allowReasons: sets.get(a >> 1), denyReasons: sets.get(d >> 1) })
      evaluations.set(key, e)
    }
    return e
  }

  const traced = (input: PolicyInput): Evaluation => {
    const trace: RuleTrace[] = []
    const byAction: Record<Action, number[]> = { allow: [], deny: [] }
    for (const clause of clauses) {
      const outcomes = clause.criteria.map((c) => c.check(input))
      const criteria: CriterionTrace[] = clause.criteria.map((c, i) => {
        const o = outcomes[i] as number
        return { name: c.node.key, data: c.node.data, result: (o & 1) === 1, reasons: [...sets.get(o >> 1)] }
      })
      const shape = SHAPE[clause.operator]
      const o = mergeOutcomes(outcomes, shape.invert, shape.all, sets)
      byAction[clause.action].push(o)
      trace.push({ action: clause.action, operator: clause.operator, result: (o & 1) === 1, criteria })
    }
    const a = mergeOutcomes(byAction.allow, 0, false, sets)
    const d = mergeOutcomes(byAction.deny, 0, false, sets)
    return { ...evaluation(a, d), trace }
  }

  return Object.freeze({
    source,
    deviceTypes: Object.freeze(deviceTypes),
    evaluate(input: PolicyInput, options?: EvaluateOptions): Evaluation {
      if (options?.trace === true) return traced(input)
      return evaluation(allow(input), deny(input))
    },
  })
}

/** A deep, frozen copy of a JSON-like document, so a compiled policy never sees later changes. */
export function frozenCopy(value: unknown): unknown {
  if (Array.isArray(value)) return Object.freeze(value.map(frozenCopy))
  if (isPlainObject(value)) return Object.freeze(Object.fromEntries(Object.keys(value).map((k) => [k, frozenCopy(value[k])])))
  return value
}
