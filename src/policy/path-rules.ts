/**
 * Which paths a policy can tell apart. A decision reads the request path only through `http_path`
 * criteria, so two paths that every `http_path` criterion of a policy answers alike get the same
 * decision from it. The proxy uses this to refuse a path whose `;` parameters would change the
 * decision once a lenient upstream strips them (docs/proxy.md, "Request target").
 */
import { compileHttpPathMatcher } from './criteria/http-path.js'
import type { StringPredicate } from './matchers.js'
import { parseDocument } from './parse.js'
import type { PolicyError } from './types.js'

/** Whether the policy could decide differently for path `a` than for path `b`. */
export type PathComparison = (a: string, b: string) => boolean

const ALWAYS_DIFFERENT: PathComparison = () => true

/**
 * Compiles the comparison for an embedded PPL document (a route's `policy`, object or list);
 * undefined when it has no `http_path` criterion, so that its decisions never depend on the path.
 * A document that does not compile counts as telling every two paths apart (fail closed; such a
 * route denies everything anyway).
 */
export function compilePathComparison(ppl: unknown): PathComparison | undefined {
  if (ppl === undefined || ppl === null) return undefined
  const errors: PolicyError[] = []
  const clauses = parseDocument(ppl, '', errors)
  if (errors.length > 0) return ALWAYS_DIFFERENT
  const matchers: StringPredicate[] = []
  for (const clause of clauses) {
    for (const node of clause.criteria) {
      if (node.name !== 'http_path') continue
      let broken = false
      const match = compileHttpPathMatcher(node.data, { subPath: node.subPath, error: () => (broken = true) })
      if (!match || broken) return ALWAYS_DIFFERENT
      matchers.push(match)
    }
  }
  if (matchers.length === 0) return undefined
  return (a, b) => matchers.some((match) => match(a) !== match(b))
}
