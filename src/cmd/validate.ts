/**
 * `portcullis validate`: prints every problem of a config (exit 1), or a summary of its routes
 * (exit 0). Warnings are printed in both cases.
 */
import { formatIssue, loadConfig } from '../config/index.js'
import type { RouteConfig } from '../config/types.js'

export function describeRoute(route: RouteConfig): string {
  const match = route.regex !== undefined ? ` regex ${route.regex}` : route.path !== undefined ? ` path ${route.path}` : route.prefix !== undefined ? ` prefix ${route.prefix}` : ''
  const target = route.redirect ? 'redirect' : route.response ? `response ${route.response.status}` : route.to.map((t) => t.url.href + (t.weight !== 1 ? `,${t.weight}` : '')).join(' ')
  const access = route.allowPublicUnauthenticatedAccess ? 'public' : 'protected'
  return `  routes[${route.index}] ${route.fromUrl}${match} -> ${target} (${access})`
}

export function validate(configFile: string | undefined, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): number {
  const { config, issues } = loadConfig({ ...(configFile !== undefined ? { file: configFile } : {}), env: process.env })
  for (const issue of issues) out(formatIssue(issue))
  if (!config) {
    const errors = issues.filter((i) => i.severity === 'error').length
    out(`${configFile ?? 'configuration'}: ${errors} error${errors === 1 ? '' : 's'}; the configuration is not valid`)
    return 1
  }
  out(`${configFile ?? 'configuration'}: valid, ${config.routes.length} route${config.routes.length === 1 ? '' : 's'}`)
  for (const route of config.routes) out(describeRoute(route))
  return 0
}
