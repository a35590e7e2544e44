/**
 * Directory settings (docs/directory.md): where group membership comes from when the token's
 * `groups` claim is not enough.
 *
 * - Pull sync from the identity provider's directory API, with Pomerium's (pre-v0.20) keys:
 *   `idp_service_account` (the provider's API credential, JSON or base64 JSON),
 *   `idp_refresh_directory_interval` (default 10m, at least 1m) and
 *   `idp_refresh_directory_timeout` (default 1m).
 * - Push from a provider through SCIM 2.0: `scim.address` and `scim.bearer_token_sha256` (the
 *   tokens' SHA-256 digests, hex; the tokens themselves are never in the config).
 * - The built-in provider's users file, when it declares `groups:` with ids and names.
 */
import type { IssueCollector } from './issues.js'
import { parseAddress } from './address.js'

/** Which fields each provider's `idp_service_account` needs (docs/directory.md lists them). */
export const DIRECTORY_ACCOUNT_FIELDS: Readonly<Record<string, readonly string[]>> = {
  google: ['client_email', 'private_key', 'impersonate_user'],
  azure: ['client_id', 'client_secret', 'directory_id'],
  okta: ['api_key'],
  github: ['personal_access_token'],
  gitlab: ['private_token'],
  auth0: ['client_id', 'client_secret'],
  onelogin: ['client_id', 'client_secret'],
  keycloak: ['client_id', 'client_secret'],
}

/** Providers whose directory Portcullis can read today. */
export const DIRECTORY_PROVIDERS: ReadonlySet<string> = new Set(Object.keys(DIRECTORY_ACCOUNT_FIELDS))

export const MIN_DIRECTORY_INTERVAL_MS = 60_000

export interface DirectorySyncSettings {
  /** `idp_provider` of the directory. */
  readonly provider: string
  /** `idp_provider_url`, for providers whose API lives there (Okta, GitHub Enterprise). */
  readonly providerUrl: string | undefined
  /** The parsed `idp_service_account`. Secret: never logged. */
  readonly account: Readonly<Record<string, string>>
  readonly intervalMs: number
  readonly timeoutMs: number
}

export interface ScimSettings {
  /** `host:port`, checked. */
  readonly address: string
  /** SHA-256 digests of the accepted bearer tokens, lower-case hex. */
  readonly tokenDigests: readonly string[]
}

export interface DirectorySettings {
  readonly sync: DirectorySyncSettings | undefined
  readonly scim: ScimSettings | undefined
  readonly intervalMs: number
  readonly timeoutMs: number
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** `idp_service_account` as JSON text, or base64 of it (Pomerium's form). */
export function parseServiceAccount(text: string): Record<string, unknown> | undefined {
  const trimmed = text.trim()
  const candidates = trimmed.startsWith('{') ? [trimmed] : [Buffer.from(trimmed, 'base64').toString('utf8')]
  for (const c of candidates) {
    try {
      const value: unknown = JSON.parse(c)
      if (isRecord(value)) return value
    } catch {
      // not JSON
    }
  }
  return undefined
}

export function checkDirectory(raw: Readonly<Record<string, unknown>>, issues: IssueCollector): DirectorySettings {
  const intervalMs = (raw['idp_refresh_directory_interval'] as number | undefined) ?? 600_000
  const timeoutMs = (raw['idp_refresh_directory_timeout'] as number | undefined) ?? 60_000
  if (intervalMs < MIN_DIRECTORY_INTERVAL_MS) issues.error('idp_refresh_directory_interval', intervalMs, 'expected at least 1m')
  if (timeoutMs <= 0) issues.error('idp_refresh_directory_timeout', timeoutMs, 'expected a positive duration')
  return { sync: checkSync(raw, issues, intervalMs, timeoutMs), scim: checkScim(raw, issues), intervalMs, timeoutMs }
}

function checkSync(raw: Readonly<Record<string, unknown>>, issues: IssueCollector, intervalMs: number, timeoutMs: number): DirectorySyncSettings | undefined {
  const text = raw['idp_service_account']
  if (text === undefined || text === null || text === '') return undefined
  const idpProvider = typeof raw['idp_provider'] === 'string' ? raw['idp_provider'] : ''
  const redacted = '(set; not shown)'
  const parsed = typeof text === 'string' ? parseServiceAccount(text) : undefined
  if (!parsed) {
    issues.error('idp_service_account', redacted, 'expected a JSON object, or base64 of one')
    return undefined
  }
  // `idp_provider: oidc` in front of Keycloak names its directory in the account: {"provider": "keycloak", ...}.
  const provider = typeof parsed['provider'] === 'string' && parsed['provider'] !== '' ? parsed['provider'] : idpProvider
  if (!DIRECTORY_PROVIDERS.has(provider)) {
    issues.error(
      'idp_service_account',
      redacted,
      `directory sync is not available for ${provider === '' ? 'an unset idp_provider' : provider}; it is for ${[...DIRECTORY_PROVIDERS].join(', ')} (set "provider" in idp_service_account for an oidc provider such as keycloak; any provider can push through scim)`,
    )
    return undefined
  }
  const account: Record<string, string> = {}
  for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') account[k] = v
  const missing = (DIRECTORY_ACCOUNT_FIELDS[provider] ?? []).filter((f) => !account[f])
  if (missing.length > 0) {
    issues.error('idp_service_account', redacted, `the ${provider} directory needs ${missing.join(', ')} in idp_service_account`)
    return undefined
  }
  if (['okta', 'auth0', 'onelogin', 'keycloak'].includes(provider) && typeof raw['idp_provider_url'] !== 'string' && !account['api_url']) {
    issues.error('idp_provider_url', raw['idp_provider_url'], `the ${provider} directory is read from the tenant at idp_provider_url`)
    return undefined
  }
  if (provider === 'keycloak' && !/\/realms\/[^/]+\/?$/.test(urlPath(account['api_url'] ?? String(raw['idp_provider_url'])))) {
    issues.error('idp_provider_url', raw['idp_provider_url'], 'the keycloak directory needs the realm URL (https://keycloak.example.com/realms/<realm>)')
    return undefined
  }
  for (const key of ['api_url', 'token_url', 'login_url']) {
    const v = account[key]
    if (v === undefined) continue
    let url: URL | undefined
    try {
      url = new URL(v)
    } catch {
      url = undefined
    }
    if (!url || (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname)))) {
      issues.error(`idp_service_account.${key}`, v, 'expected an https URL (http only on loopback)')
      return undefined
    }
  }
  const providerUrl = typeof raw['idp_provider_url'] === 'string' ? raw['idp_provider_url'] : undefined
  return { provider, providerUrl, account, intervalMs, timeoutMs }
}

function urlPath(text: string): string {
  try {
    return new URL(text).pathname
  } catch {
    return ''
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

function checkScim(raw: Readonly<Record<string, unknown>>, issues: IssueCollector): ScimSettings | undefined {
  const scim = raw['scim']
  if (scim === undefined || scim === null) return undefined
  if (!isRecord(scim)) {
    issues.error('scim', scim, 'expected {address, bearer_token_sha256}')
    return undefined
  }
  const addressText = scim['address']
  const address = typeof addressText === 'string' ? parseAddress(addressText) : undefined
  if (!address) issues.error('scim.address', addressText, 'expected a listen address such as 127.0.0.1:8097')
  const list = scim['bearer_token_sha256']
  const digests = Array.isArray(list) ? list : typeof list === 'string' ? [list] : undefined
  const good: string[] = []
  if (!digests || digests.length === 0) {
    issues.error('scim.bearer_token_sha256', list, 'required: the SHA-256 (hex) of each bearer token a provider uses, e.g. printf %s "$TOKEN" | sha256sum')
  } else {
    digests.forEach((d, i) => {
      if (typeof d === 'string' && /^[0-9a-fA-F]{64}$/.test(d)) good.push(d.toLowerCase())
      else issues.error(`scim.bearer_token_sha256[${i}]`, d, 'expected 64 hex digits (a SHA-256 digest)')
    })
  }
  return address && typeof addressText === 'string' && digests && good.length === digests.length ? { address: addressText.trim(), tokenDigests: good } : undefined
}
