/** `http_path`: a string matcher on the request path (normalised, without the query), compared exactly. */
import { compileStringMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { RequestCriterion } from './types.js'

export const httpPath: RequestCriterion = {
  name: 'http_path',
  subPath: 'none',
  session: false,
  outcomes: binary(R.httpPathOk, R.httpPathUnauthorized),
  compile(data, ctx) {
    const match = compileStringMatcher(data, ctx)
    if (!match) return undefined
    return (input) => (match(input.path) ? OK : FAIL)
  },
}
