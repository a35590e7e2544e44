/** `http_path`: a string matcher on the request path (normalised, without the query), compared exactly. */
import { compileStringMatcher } from '../matchers.js'
import type { StringPredicate } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { CompileContext, RequestCriterion } from './types.js'

/** The path predicate of one `http_path` criterion; shared with path-rules.ts so both read the data alike. */
export function compileHttpPathMatcher(data: unknown, ctx: CompileContext): StringPredicate | undefined {
  return compileStringMatcher(data, ctx)
}

export const httpPath: RequestCriterion = {
  name: 'http_path',
  subPath: 'none',
  session: false,
  outcomes: binary(R.httpPathOk, R.httpPathUnauthorized),
  compile(data, ctx) {
    const match = compileHttpPathMatcher(data, ctx)
    if (!match) return undefined
    return (input) => (match(input.path) ? OK : FAIL)
  },
}
