/**
 * Where a matched request goes: the upstream path (prefix/regex rewrites and the path of the
 * `to` URL) and the upstream Host (Pomerium docs: Rewriting, precedence host_rewrite > host_rewrite_header
 * > host_path_regex_rewrite > preserve_host_header > automatic).
 */
import type { RouteConfig, UpstreamTarget } from '../config/types.js'
import type { Pattern } from '../shared/pattern.js'

export interface PathPlan {
  /** `regex_rewrite_pattern` + `_substitution`, replacing every match. */
  readonly regexRewrite: ((path: string) => string) | undefined
  readonly prefixRewrite: string | undefined
  readonly hostPathRegex: Pattern | undefined
  readonly hostPathRewrite: ((path: string) => string) | undefined
}

export function buildPathPlan(route: RouteConfig): PathPlan {
  return {
    regexRewrite: route.regexRewritePattern?.replacer(route.regexRewriteSubstitution ?? ''),
    prefixRewrite: route.prefixRewrite,
    hostPathRegex: route.hostPathRegexRewritePattern,
    hostPathRewrite: route.hostPathRegexRewritePattern?.replacer(route.hostPathRegexRewriteSubstitution ?? ''),
  }
}

/** The path prefix a `to` URL adds (`to: http://x/app/`), or undefined for none. */
export function targetPathPrefix(target: UpstreamTarget): string | undefined {
  // The path of an http+unix URL is the socket, not a prefix.
  if (target.url.protocol.endsWith('+unix:')) return undefined
  const p = target.url.pathname
  return p === '' || p === '/' ? undefined : p
}

export function upstreamPath(route: RouteConfig, plan: PathPlan, path: string, targetPrefix: string | undefined): string {
  if (plan.regexRewrite) return plan.regexRewrite(path)
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
  } else if (plan.hostPathRegex && plan.hostPathRewrite) {
    host = plan.hostPathRegex.test(path) ? plan.hostPathRewrite(path) : clientHost
  } else if (route.preserveHostHeader || target.url.host === '') host = clientHost
  else host = target.url.host
  return { host, rewritten: host !== clientHost }
}
