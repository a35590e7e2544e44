/**
 * The Pomerium Policy Language (PPL), as a pure module: no I/O, no clock, no configuration
 * loading. A route's policy is compiled once, when the configuration loads, into closures;
 * deciding a request runs those closures only (a few microseconds, no parsing).
 *
 * ```
 * policy      := rule-object | [ rule-object, ... ]
 * rule-object := { ("allow" | "deny"): conditionals, ... }
 * conditionals:= { "and"?: [criterion...], "or"?: [...], "not"?: [...], "nor"?: [...] }
 * criterion   := { "<name>[/<subpath>]": <data> }
 * ```
 * `and`: all true; `or`: any true; `not`: all false; `nor`: at least one false. Operators and
 * rules of one action are OR-ed; access needs allow true and deny false (default deny).
 *
 * Files: parse.ts (structure) → compile.ts (closures) → decide.ts (status); route.ts translates
 * legacy route fields; criteria/ has one file per criterion, registered in criteria/index.ts.
 * Operator-facing documentation: docs/policy.md.
 */
export { compilePolicy } from './compile.js'
export { compilePathComparison } from './path-rules.js'
export type { PathComparison } from './path-rules.js'
export { decide } from './decide.js'
export { describeDenial, describeReason } from './reasons.js'
export { compileRoutePolicy } from './route.js'
export { cidrsContain, compileCidrs } from './ip.js'
export type { CidrSet } from './ip.js'
export type {
  CompiledPolicy,
  CompileResult,
  CriterionTrace,
  Decision,
  EvaluateOptions,
  Evaluation,
  MtlsEnforcement,
  PolicyClientCertificate,
  PolicyDevice,
  PolicyError,
  PolicyInput,
  PolicySession,
  RouteAccess,
  RuleTrace,
} from './types.js'
