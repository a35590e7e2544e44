/** `accept`: always true (`accept`). The data is ignored. */
import { R } from '../reasons.js'
import { OK, binary, checkIgnoredData } from './types.js'
import type { RequestCriterion } from './types.js'

export const accept: RequestCriterion = {
  name: 'accept',
  subPath: 'none',
  session: false,
  outcomes: binary(R.accept, undefined),
  compile(data, ctx) {
    checkIgnoredData(data, ctx, 'accept')
    return () => OK
  },
}
