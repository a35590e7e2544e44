/**
 * `http_method`: a string matcher on the request method. Both sides are upper-cased, so a policy
 * written `http_method: get` means GET (and a `deny` on `delete` cannot be dodged by case).
 */
import { compileStringMatcher } from '../matchers.js'
import { R } from '../reasons.js'
import { FAIL, OK, binary } from './types.js'
import type { RequestCriterion } from './types.js'

const upper = (s: string): string => s.toUpperCase()

export const httpMethod: RequestCriterion = {
  name: 'http_method',
  subPath: 'none',
  session: false,
  outcomes: binary(R.httpMethodOk, R.httpMethodUnauthorized),
  compile(data, ctx) {
    const match = compileStringMatcher(data, ctx, { canon: upper })
    if (!match) return undefined
    return (input) => (match(upper(input.method)) ? OK : FAIL)
  },
}
