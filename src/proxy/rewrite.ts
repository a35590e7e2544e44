/**
 * Where a matched request goes: the upstream path (prefix/regex rewrites and the path of the
 * `to` URL) and the upstream Host (reference 3.3, precedence host_rewrite > host_rewrite_header
 * > host_path_regex_rewrite > preserve_host_header > automatic).
 */
import type { RouteConfig, UpstreamTarget } from '../config/types.js'

export interface PathPlan {
  readonly regex: RegExp | undefined
  readonly substitution: string
  readonly prefixRewrite: string | undefined
  readonly hostPathRegex: RegExp | undefined
  readonly hostPathSubstitution: string
}

/** Envoy substitutions use `\1`; JavaScript's replace uses `$1`. */
export function toJsSubstitution(envoy: string): string {
  return envoy.replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1')
}

function globalCopy(re: RegExp | undefined): RegExp | undefined {
  if (!re) return undefined
  return re.global ? re : new RegExp(re.source, re.flags + 'g')
}

export function buildPathPlan(route: RouteConfig): PathPlan {
  return {
    regex: globalCopy(route.regexRewritePattern),
    substitution: toJsSubstitution(route.regexRewriteSubstitution ?? ''),
    prefixRewrite: route.prefixRewrite,
    hostPathRegex: route.hostPathRegexRewritePattern,
    hostPathSubstitution: toJsSubstitution(route.hostPathRegexRewriteSubstitution ?? ''),
  }
}

/** The path prefix a `to` URL adds (`to: http://x/app/`), or undefined for none. */
export function targetPathPrefix(target: UpstreamTarget): string | undefined {
  const p = target.url.pathname
  return p === '' || p === '/' ? undefined : p
}

export function upstreamPath(route: RouteConfig, plan: PathPlan, path: string, targetPrefix: string | undefined): string {
  if (plan.regex) return path.replace(plan.regex, plan.substitution)
  const rewrite = plan.prefixRewrite ?? targetPrefix
  if (rewrite === undefined) return path
  if (route.path !== undefined || route.regexCompiled) return rewrite
  const matched = route.prefix ?? '/'
  return rewrite + path.slice(matched.length)
}

/**
 * Returns the Host for the upstream and whether it differs from the client's (a rewrite, which
 * adds X-Forwarded-Host and x-pomerium-original-host).
 */
export function upstreamHost(
  route: RouteConfig,
  plan: PathPlan,
  clientHost: string,
  path: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  target: UpstreamTarget,
): { host: string; rewritten: boolean } {
  let host: string
  if (route.hostRewrite !== undefined) host = route.hostRewrite
  else if (route.hostRewriteHeader !== undefined) {
    const v = headers[route.hostRewriteHeader.toLowerCase()]
    host = typeof v === 'string' && v !== '' ? v : clientHost
  } else if (plan.hostPathRegex) {
    host = plan.hostPathRegex.test(path) ? path.replace(plan.hostPathRegex, plan.hostPathSubstitution) : clientHost
  } else if (route.preserveHostHeader) host = clientHost
  else host = target.url.host
  return { host, rewritten: host !== clientHost }
}
