/**
 * The shape of a criterion: a name, the outcomes it can report, and a compile step that turns
 * its data into a closure once, when the configuration is loaded.
 *
 * A compiled check returns the index of one of its `outcomes` (most criteria have two: OK and
 * FAIL). The compiler turns that index into an encoded outcome, and answers for the criteria
 * that need a session when there is none, so criteria never see a missing session.
 */
import type { PolicyInput, PolicySession } from '../types.js'

export interface CriterionOutcome {
  readonly value: boolean
  readonly reasons: readonly string[]
}

export interface CompileContext {
  /** The part of the key after the first `/` (`claim/groups` → `groups`), or undefined. */
  readonly subPath: string | undefined
  /** Reports a problem with the data; `key` locates it inside the data (`starts_with`, `[2]`). */
  error(message: string, key?: string): void
}

interface Base {
  readonly name: string
  /** Whether the key takes a `/sub-path` (`claim/<path>`) or must not have one. */
  readonly subPath: 'none' | 'required'
  readonly outcomes: readonly CriterionOutcome[]
}

/** A criterion on the request alone. */
export interface RequestCriterion extends Base {
  readonly session: false
  compile(data: unknown, ctx: CompileContext): ((input: PolicyInput) => number) | undefined
}

/** A criterion on the signed-in user: false with `user-unauthenticated` when there is no session. */
export interface SessionCriterion extends Base {
  readonly session: true
  compile(data: unknown, ctx: CompileContext): ((session: PolicySession, input: PolicyInput) => number) | undefined
}

export type CriterionDefinition = RequestCriterion | SessionCriterion

/** Outcome indexes of the usual two-outcome criteria (see `binary`). */
export const OK = 0
export const FAIL = 1

/** The outcomes of a criterion that is true with reason `ok` or false with reason `fail`. */
export function binary(ok: string | undefined, fail: string | undefined): readonly CriterionOutcome[] {
  return [
    { value: true, reasons: ok === undefined ? [] : [ok] },
    { value: false, reasons: fail === undefined ? [] : [fail] },
  ]
}

/**
 * Checks the data of criteria that ignore it (`accept: true`). `false` (or 0) is refused because
 * the criterion would still apply: `authenticated_user: false` admits every signed-in user.
 */
export function checkIgnoredData(data: unknown, ctx: CompileContext, name: string): void {
  if (data === false || data === 0) {
    ctx.error(`${name} ignores its value, so ${String(data)} would still apply it; write true, or remove the criterion`)
  }
}

/** A context whose errors are located under `key` of the current data (`san_dns`, `[0]`). */
export function within(ctx: CompileContext, key: string): CompileContext {
  const join = (sub: string): string => (sub.startsWith('[') ? `${key}${sub}` : `${key}.${sub}`)
  return {
    subPath: ctx.subPath,
    error: (message, sub) => ctx.error(message, sub === undefined ? key : join(sub)),
  }
}
