/**
 * `loadConfig`: file + environment → validated, normalised, deep-frozen `Config`, plus every
 * problem found. Synchronous on purpose: it runs once at start-up and on reload, and a
 * synchronous load can never interleave with another reload.
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Config, ConfigIssue, RouteConfig } from './types.js'
import { GLOBAL_SETTINGS, REMOVED_GLOBAL_KEYS, REMOVED_GLOBAL_PREFIXES } from './schema.js'
import { isRecord } from './coerce.js'
import { parseSource } from './document.js'
import { applyEnv } from './env.js'
import { deepFreeze } from './freeze.js'
import {
  checkAddresses,
  checkCertificates,
  checkClaimHeaders,
  checkLogFields,
  checkNonEmptyLists,
  checkRuntimeFlags,
  checkSecrets,
  checkServices,
  globalResponseHeaders,
} from './global.js'
import { applyBuiltinDefault, checkSignIn, checkSignInCoverage } from './sign-in.js'
import { checkStorage } from './storage.js'
import { compilePolicy, compileRoutePolicy } from '../policy/index.js'
import { checkDownstreamMtls, mtlsEnforcementOf } from './mtls.js'
import { checkDeviceTypes } from './devices.js'
import { checkForwardAuth } from './forward-auth.js'
import { checkExtAuthz } from './ext-authz.js'
import { checkDirectory } from './directory.js'
import { identityConfigIssues } from './identity-settings.js'
import { IssueCollector, indexPath } from './issues.js'
import type { NodePositions } from './issues.js'
import { normaliseObject } from './normalise.js'
import type { LoadContext } from './normalise.js'
import { buildRoute, circuitBreakersOf, DEFAULT_CIRCUIT_BREAKERS } from './routes.js'
import { readServiceSettings, routeServiceDefaults } from './service-settings.js'
import { inactiveGlobalSettings, inactiveRouteSettings, inactiveSettingsMessage } from './status.js'

/** Inputs of {@link loadConfig}. */
export interface LoadOptions {
  /** Config file (YAML or JSON); relative to `cwd`. Omit to configure from the environment only. */
  file?: string | undefined
  /** Environment variables; defaults to `process.env`. */
  env?: Record<string, string | undefined> | undefined
  /** Base for a relative `file` (and for relative paths when there is no file); default `process.cwd()`. */
  cwd?: string | undefined
}

/** Result of {@link loadConfig}: `config` is undefined when any issue is an error. */
export interface LoadResult {
  config: Config | undefined
  issues: ConfigIssue[]
}

function fileIssue(file: string, message: string): ConfigIssue {
  return { severity: 'error', file, line: undefined, column: undefined, path: '', value: undefined, message }
}

/** The environment variable that supplied `path` (or the list or object it is in). */
function envOrigin(origins: ReadonlyMap<string, string>, path: string): string | undefined {
  for (let p = path; p !== ''; p = p.slice(0, Math.max(0, p.lastIndexOf('.'), p.lastIndexOf('[')))) {
    const env = origins.get(p)
    if (env !== undefined) return env
  }
  return undefined
}

/**
 * Loads and validates the configuration. Never throws for bad input: every problem is
 * returned in `issues` (errors and warnings), all at once.
 */
export function loadConfig(options: LoadOptions): LoadResult {
  const cwd = options.cwd ?? process.cwd()
  const env = options.env ?? process.env
  const file = options.file === undefined ? undefined : resolve(cwd, options.file)

  let fileRaw: Record<string, unknown> = {}
  let positions = new Map<string, NodePositions>()
  const early: ConfigIssue[] = []
  if (file !== undefined) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      return { config: undefined, issues: [fileIssue(file, `cannot read config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`)] }
    }
    const parsed = parseSource(text, file)
    early.push(...parsed.issues)
    if (parsed.issues.some((i) => i.severity === 'error')) return { config: undefined, issues: early }
    if (isRecord(parsed.value)) fileRaw = parsed.value
    else if (parsed.value !== null && parsed.value !== undefined) {
      return { config: undefined, issues: [...early, fileIssue(file, 'expected a mapping of settings at the top level')] }
    }
    positions = parsed.positions
  }

  const applied = applyEnv(fileRaw, env)
  const issues = new IssueCollector(file, positions, applied.origins)
  for (const i of [...early, ...applied.issues]) issues.push(i)
  const ctx: LoadContext = { issues, dir: file === undefined ? cwd : dirname(file), referencedFiles: new Set() }

  const raw = normaliseObject(applied.raw, GLOBAL_SETTINGS, '', ctx, {
    removed: REMOVED_GLOBAL_KEYS,
    removedPrefixes: REMOVED_GLOBAL_PREFIXES,
    applyDefaults: true,
  })

  const services = checkServices(raw, ctx)
  const { address, httpRedirectAddr } = checkAddresses(raw, ctx)
  const certificates = checkCertificates(raw, ctx)
  const downstreamMtls = checkDownstreamMtls(raw, ctx.issues)
  const deviceTypes = checkDeviceTypes(raw, ctx.issues, ctx)
  const forwardAuth = checkForwardAuth(raw, ctx.issues, ctx)
  const extAuthz = checkExtAuthz(raw, ctx.issues, ctx)
  const directory = checkDirectory(raw, ctx.issues)
  const deviceTypeIds = deviceTypes.map((t) => t.id)
  if (raw['device_approvers'] !== undefined) {
    for (const e of compilePolicy(raw['device_approvers'], 'device_approvers').errors) ctx.issues.error(e.path, undefined, e.message)
  }
  checkSecrets(raw, ctx)
  applyBuiltinDefault(raw, ctx)
  checkSignIn(raw, ctx, new Set(Object.keys(applied.raw)))
  checkStorage(raw, ctx)
  checkNonEmptyLists(raw, ctx)
  if (raw['codec_type'] === 'http3') {
    ctx.issues.warning('codec_type', 'http3', 'HTTP/3 is not supported yet; the listener serves HTTP/1.1 and HTTP/2 (as codec_type: auto)')
  }
  const accessLogFields = checkLogFields(raw, 'access_log_fields', ctx)
  const authorizeLogFields = checkLogFields(raw, 'authorize_log_fields', ctx)
  raw['authorize_log_fields'] = authorizeLogFields
  raw['runtime_flags'] = checkRuntimeFlags(raw, ctx)
  raw['jwt_claims_headers'] = checkClaimHeaders(raw, ctx)
  const setResponseHeaders = globalResponseHeaders(raw, ctx)
  const allowUpgrades = ((raw['allow_upgrades'] as string[] | undefined) ?? []).map((u) => u.toLowerCase())
  const defaultUpstreamTimeoutMs = raw['default_upstream_timeout'] as number
  const passIdentityHeaders = raw['pass_identity_headers'] as boolean
  const serviceSettings = readServiceSettings(raw, ctx)
  if (!services.includes('all') && !services.includes('databroker') && serviceSettings.databrokerServiceUrls.length === 0) {
    ctx.issues.error('databroker_service_url', undefined, `required when services (${services.join(',')}) does not include databroker (or databroker_service_urls / databroker_internal_service_url)`)
  }

  const mtls = mtlsEnforcementOf(raw)
  // `policy` (older name, and the POLICY env var) comes first, then `routes`, as in Pomerium.
  const routes: RouteConfig[] = []
  const inactive = inactiveGlobalSettings(raw)
  const circuitBreakers = circuitBreakersOf(raw, DEFAULT_CIRCUIT_BREAKERS)
  let index = 0
  for (const key of ['policy', 'routes']) {
    const list = raw[key]
    if (!Array.isArray(list)) continue
    list.forEach((entry: unknown, i) => {
      const routePath = indexPath(key, i)
      const built = buildRoute(entry, index++, routePath, ctx, {
        defaultUpstreamTimeoutMs,
        setResponseHeaders,
        allowUpgrades,
        passIdentityHeaders,
        circuitBreakers,
        services: routeServiceDefaults(raw),
      })
      if (built) {
        const { route } = built
        routes.push(route)
        inactive.push(...inactiveRouteSettings(built.raw, routePath))
        // Policies compile here once so that a bad one is a config error with its key path.
        for (const e of compileRoutePolicy(route, { path: routePath, deviceTypes: deviceTypeIds, ...(mtls ? { mtls } : {}) }).errors) ctx.issues.error(e.path, undefined, e.message)
      }
    })
  }
  for (const issue of identityConfigIssues({ raw, routes })) ctx.issues.error(issue.path, undefined, issue.message)
  checkSignInCoverage(raw, routes, ctx)
  const inactiveMessage = inactiveSettingsMessage(inactive.map((path) => ({ path, env: envOrigin(applied.origins, path) })))
  if (inactiveMessage !== undefined) {
    issues.push({ severity: 'warning', file, line: undefined, column: undefined, path: '', value: undefined, message: inactiveMessage, kind: 'not_in_effect' })
  }
  // Routes are exposed normalised in `routes`; keeping the written form too would invite misuse.
  delete raw['policy']
  delete raw['routes']

  // Unknown keys first: a misspelt key is often the cause of the problems after it (a default
  // applies where the user meant to set a value). Then reading order: environment issues first,
  // then the file from top to bottom; the summaries about the whole config last.
  const rank = (i: ConfigIssue): number => (i.kind === 'unknown_key' ? 0 : i.kind === 'no_sign_in' || i.kind === 'not_in_effect' ? 2 : 1)
  const sorted = issues.issues
    .map((issue, n) => ({ issue, n }))
    .sort(
      (a, b) =>
        rank(a.issue) - rank(b.issue) ||
        (a.issue.line ?? 0) - (b.issue.line ?? 0) ||
        (a.issue.column ?? 0) - (b.issue.column ?? 0) ||
        a.n - b.n,
    )
    .map((x) => x.issue)
  if (issues.hasErrors) return { config: undefined, issues: sorted }

  const config: Config = {
    source: { file, referencedFiles: [...ctx.referencedFiles] },
    services,
    address,
    insecureServer: raw['insecure_server'] === true,
    codecType: raw['codec_type'] === 'http1' || raw['codec_type'] === 'http2' ? raw['codec_type'] : 'auto',
    useProxyProtocol: raw['use_proxy_protocol'] === true,
    dnsLookupFamily: (raw['dns_lookup_family'] ?? 'V4_PREFERRED') as Config['dnsLookupFamily'],
    httpRedirectAddr,
    certificates,
    timeoutReadMs: raw['timeout_read'] as number,
    timeoutWriteMs: raw['timeout_write'] as number,
    timeoutIdleMs: raw['timeout_idle'] as number,
    defaultUpstreamTimeoutMs,
    headersWithUnderscoresAction: raw['headers_with_underscores_action'] as Config['headersWithUnderscoresAction'],
    pathWithEscapedSlashesAction: raw['path_with_escaped_slashes_action'] as Config['pathWithEscapedSlashesAction'],
    mergeSlashes: raw['merge_slashes'] as boolean,
    normalizePath: raw['normalize_path'] as boolean,
    skipXffAppend: raw['skip_xff_append'] as boolean,
    xffNumTrustedHops: raw['xff_num_trusted_hops'] as number,
    setResponseHeaders,
    allowUpgrades,
    passIdentityHeaders,
    logLevel: raw['log_level'] as string,
    accessLogFields,
    workers: raw['workers'] as number,
    routes,
    ...serviceSettings,
    authorizeLogFields,
    jwtClaimsHeaders: raw['jwt_claims_headers'] as Record<string, string>,
    mtlsEnforcement: mtls,
    downstreamMtls,
    deviceTypes,
    forwardAuth,
    extAuthz,
    directory,
    deviceApprovers: raw['device_approvers'] ?? undefined,
    runtimeFlags: raw['runtime_flags'] as Record<string, boolean>,
    raw,
  }
  return { config: deepFreeze(config), issues: sorted }
}

