/**
 * `portcullis validate`: prints every problem of a config (exit 1), or a summary of its routes
 * (exit 0). Warnings are printed in both cases. Unknown keys fail validation unless
 * `--allow-unknown`: a misspelt key is ignored at start-up (as Pomerium ignores it), and a
 * misspelt `allow_public_unauthenticated_access` turns a public route into one nobody can use.
 */
import { formatIssue, loadConfig } from '../config/index.js'
import type { ConfigIssue } from '../config/index.js'
import type { RouteConfig } from '../config/types.js'
import { compileRoutePolicy } from '../policy/index.js'

export interface ValidateOptions {
  /** Report unknown keys as warnings and still exit 0 (start-up's behaviour). */
  readonly allowUnknown?: boolean
}

export function describeRoute(route: RouteConfig): string {
  const match = route.regex !== undefined ? ` regex ${route.regex}` : route.path !== undefined ? ` path ${route.path}` : route.prefix !== undefined ? ` prefix ${route.prefix}` : ''
  const target = route.redirect ? 'redirect' : route.response ? `response ${route.response.status}` : route.to.map((t) => t.url.href + (t.weight !== 1 ? `,${t.weight}` : '')).join(' ')
  const access = route.allowPublicUnauthenticatedAccess ? 'public' : admitsNobody(route) ? 'protected, no allow rule: admits nobody' : 'protected'
  return `  routes[${route.index}] ${route.fromUrl}${match} -> ${target} (${access})`
}

/**
 * Whether the route's policy (legacy fields included) has no allow rule with any criterion, so
 * every request gets 403: what a misspelt access key, accepted with --allow-unknown, leaves.
 */
function admitsNobody(route: RouteConfig): boolean {
  const { policy } = compileRoutePolicy(route, { path: `routes[${route.index}]` })
  if (!policy) return false
  const e = policy.evaluate({ session: undefined, method: 'GET', path: '/', headers: {}, clientIp: '127.0.0.1', now: new Date() }, { trace: true })
  return (e.trace ?? []).every((rule) => rule.action !== 'allow' || rule.criteria.length === 0)
}

export function validate(
  configFile: string | undefined,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  options: ValidateOptions = {},
): number {
  const loaded = loadConfig({ ...(configFile !== undefined ? { file: configFile } : {}), env: process.env })
  const issues: ConfigIssue[] = loaded.issues.map((i) => (i.kind === 'unknown_key' && options.allowUnknown !== true ? { ...i, severity: 'error' } : i))
  for (const issue of issues) out(formatIssue(issue))
  const name = configFile ?? 'configuration'
  const errors = issues.filter((i) => i.severity === 'error').length
  if (!loaded.config || errors > 0) {
    const unknown = issues.filter((i) => i.kind === 'unknown_key' && i.severity === 'error').length
    const hint = unknown > 0 ? ` (${unknown} unknown key${unknown === 1 ? '' : 's'}: correct ${unknown === 1 ? 'it' : 'them'}, or pass --allow-unknown to accept unknown keys as start-up does)` : ''
    out(`${name}: ${errors} error${errors === 1 ? '' : 's'}; the configuration is not valid${hint}`)
    return 1
  }
  const config = loaded.config
  out(`${name}: valid, ${config.routes.length} route${config.routes.length === 1 ? '' : 's'}`)
  for (const route of config.routes) out(describeRoute(route))
  return 0
}
