/** `reject`: always false (`reject`). The data is ignored. */
import { R } from '../reasons.js'
import { FAIL, binary, checkIgnoredData } from './types.js'
import type { RequestCriterion } from './types.js'

export const reject: RequestCriterion = {
  name: 'reject',
  subPath: 'none',
  session: false,
  outcomes: binary(undefined, R.reject),
  compile(data, ctx) {
    checkIgnoredData(data, ctx, 'reject')
    return () => FAIL
  },
}
