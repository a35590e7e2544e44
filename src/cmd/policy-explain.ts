/**
 * `portcullis policy explain --config FILE --url URL --email E [--user ID] [--groups a,b]
 * [--claim k=v]... [--method M] [--ip IP] [--anonymous]`: which route a URL reaches and what its
 * policy decides for a given person, rule by rule, without a running server. Uses the same
 * config loader, route table and compiled policy as the proxy, so the answer is the proxy's.
 */
import { parseArgs as parseNodeArgs } from 'node:util'
import { ConfigSource, formatIssue } from '../config/index.js'
import { mtlsEnforcement } from '../authorize/plans.js'
import { explainEvaluation } from '../authorize/policy-authorizer.js'
import { compileRoutePolicy, decide, describeDenial, describeReason } from '../policy/index.js'
import type { PolicySession } from '../policy/index.js'
import { RouteTable } from '../proxy/route-table.js'
import { environmentConfigures } from './args.js'
import { createLogger } from '../shared/log.js'

export const POLICY_USAGE = `Usage:
  portcullis policy explain --config FILE --url URL [--email E] [--user ID] [--groups a,b]
                            [--claim name=value]... [--method GET] [--ip 203.0.113.7] [--anonymous]
                            [--device-type TYPE] [--device-id ID] [--device-approved]

Prints the route the URL matches, each policy rule with its result, and the decision
(allow, sign-in, deny with reasons). Without --email/--user the request is anonymous.
--device-type (default any when --device-id or --device-approved is given) puts one registered
device in the session: its credential id (--device-id, default explain-device) and whether it
is approved; without them the session has no device.`

export function policyCommand(argv: readonly string[], out: (s: string) => void = (s) => process.stdout.write(s)): number {
  if (argv[0] !== 'explain') {
    out(`${POLICY_USAGE}\n`)
    return argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help' || argv[0] === undefined ? 0 : 2
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    out(`${POLICY_USAGE}\n`)
    return 0
  }
  let values
  try {
    values = parseNodeArgs({
      args: argv.slice(1),
      options: {
        config: { type: 'string' },
        url: { type: 'string' },
        email: { type: 'string' },
        user: { type: 'string' },
        groups: { type: 'string' },
        claim: { type: 'string', multiple: true },
        method: { type: 'string', default: 'GET' },
        ip: { type: 'string', default: '127.0.0.1' },
        anonymous: { type: 'boolean', default: false },
        'device-type': { type: 'string' },
        'device-id': { type: 'string' },
        'device-approved': { type: 'boolean', default: false },
      },
      strict: true,
    }).values
  } catch (err) {
    out(`portcullis: ${(err as Error).message}\n${POLICY_USAGE}\n`)
    return 2
  }
  if (values.url === undefined) {
    out(`portcullis: --url is required\n${POLICY_USAGE}\n`)
    return 2
  }
  if (values.config === undefined && !environmentConfigures(process.env)) {
    out(`portcullis: --config FILE is required: the configuration whose routes and policies to explain\n${POLICY_USAGE}\n`)
    return 2
  }
  const source = new ConfigSource({ file: values.config, env: process.env, logger: createLogger('disabled') })
  const { config, issues } = source.load()
  if (!config) {
    for (const i of issues) if (i.severity === 'error') out(`${formatIssue(i)}\n`)
    return 1
  }
  let url: URL
  try {
    url = new URL(values.url)
  } catch {
    out(`portcullis: --url ${JSON.stringify(values.url)} is not an absolute URL\n`)
    return 2
  }
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const route = new RouteTable(config.routes).match(url.hostname.toLowerCase(), port, url.pathname)
  if (!route) {
    out(`route:    none matches ${url.hostname}${url.pathname}\ndecision: 404 Not Found (route-not-found)\n`)
    return 0
  }
  const mtls = mtlsEnforcement(config)
  const compiled = compileRoutePolicy(route, { path: `routes[${route.index}]`, deviceTypes: config.deviceTypes.map((t) => t.id), ...(mtls ? { mtls } : {}) })
  if (!compiled.policy) {
    for (const e of compiled.errors) out(`${e.path}: ${e.message}\n`)
    return 1
  }
  const claims: Record<string, unknown> = {}
  for (const c of values.claim ?? []) {
    const eq = c.indexOf('=')
    if (eq <= 0) {
      out(`portcullis: --claim ${JSON.stringify(c)}: expected name=value\n`)
      return 2
    }
    const name = c.slice(0, eq)
    const prior = claims[name]
    const earlier: unknown[] = prior === undefined ? [] : Array.isArray(prior) ? (prior as unknown[]) : [prior]
    claims[name] = prior === undefined ? c.slice(eq + 1) : [...earlier, c.slice(eq + 1)]
  }
  if (values.groups !== undefined) claims['groups'] = values.groups.split(',').map((g) => g.trim()).filter((g) => g !== '')
  if (values.email !== undefined) {
    claims['email'] = values.email
    claims['email_verified'] ??= true
  }
  const signedIn = !values.anonymous && (values.email !== undefined || values.user !== undefined)
  const deviceGiven = values['device-type'] !== undefined || values['device-id'] !== undefined || values['device-approved'] === true
  const deviceType = values['device-type'] ?? 'any'
  const type = config.deviceTypes.find((t) => t.id === deviceType)
  if (deviceGiven && !type) {
    out(`portcullis: --device-type ${JSON.stringify(deviceType)} is not a configured device type (${config.deviceTypes.map((t) => t.id).join(', ')})\n`)
    return 2
  }
  const approved = values['device-approved'] === true
  const devices = deviceGiven
    ? [{ id: values['device-id'] ?? 'explain-device', typeId: deviceType, approved, ...(type?.approvalRequired === true && !approved ? { pendingApproval: true } : {}) }]
    : []
  const session: PolicySession | undefined = signedIn
    ? {
        sessionId: 'explain',
        userId: values.user ?? values.email ?? '',
        email: values.email ?? '',
        emailVerified: claims['email_verified'] === true ? true : undefined,
        claims,
        devices,
      }
    : undefined
  const evaluation = compiled.policy.evaluate(
    { session, method: (values.method ?? 'GET').toUpperCase(), path: url.pathname, headers: {}, clientIp: values.ip ?? '127.0.0.1', now: new Date() },
    { trace: true },
  )
  const decision = decide(evaluation, compiled.policy.deviceTypes, session)
  const verdict =
    decision.kind === 'allow'
      ? 'allow (forwarded upstream)'
      : decision.kind === 'sign-in'
        ? 'sign-in required (302 to sign in for browsers, 401 for scripts)'
        : decision.kind === 'device-enroll'
          ? `device required: enroll or authenticate a device of type ${decision.deviceType}`
          : `${decision.status} ${decision.status === 495 ? 'client certificate required' : decision.status === 450 ? 'device not allowed' : 'Forbidden'}`
  out(
    [
      `route:    ${route.name ?? route.fromUrl} (routes[${route.index}], ${route.from.host}${route.prefix ?? route.path ?? route.regex ?? '/'})`,
      `request:  ${(values.method ?? 'GET').toUpperCase()} ${url.pathname} from ${values.ip ?? '127.0.0.1'} as ${session ? `${session.email || session.userId}${values.groups ? ` (groups ${values.groups})` : ''}` : 'anonymous'}${
        session ? `, ${devices.map((d) => `device ${d.id} (${d.typeId}, ${d.approved ? 'approved' : 'not approved'})`).join('') || 'no device'}` : ''
      }`,
      `policy:   ${JSON.stringify(compiled.policy.source)}`,
      '',
      explainEvaluation(evaluation),
      '',
      `decision: ${verdict}`,
      ...decision.reasons.map((r) => `  - ${r}: ${describeReason(r)}`),
      // What the 403 page says: which rule decided, or that there is no allow rule at all.
      ...(decision.kind === 'deny' || decision.kind === 'device-denied'
        ? [`why (as the ${decision.status} page says it):`, ...describeDenial(evaluation, decision).map((w) => `  - ${w}`)]
        : []),
      '',
    ].join('\n'),
  )
  for (const i of issues) if (i.severity === 'warning') process.stderr.write(`${formatIssue(i)}\n`)
  return 0
}
