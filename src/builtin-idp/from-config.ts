/**
 * Runs the built-in provider for a config with `idp_provider: builtin`: listens on
 * `builtin_idp_address`, serves the issuer `idp_provider_url` (default `http://<address>`), and
 * registers Portcullis as its one client (`idp_client_id`, default `portcullis`; the secret is
 * `idp_client_secret` or derived from `shared_secret`). Portcullis then signs in against it over
 * HTTP like against any provider.
 */
import { hkdfSync } from 'node:crypto'
import { BUILTIN_CLIENT_ID } from '../config/sign-in.js'
import type { Config } from '../config/types.js'
import type { Logger } from '../shared/log.js'
import { startBuiltinIdp } from './server.js'
import type { BuiltinIdp } from './server.js'

const DEFAULT_BUILTIN_ADDRESS = '127.0.0.1:8081'

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

/** The client secret Portcullis uses with the built-in provider when none is configured. */
export function builtinClientSecret(config: Config, sharedSecret: Buffer): string {
  return str(config.raw['idp_client_secret']) ?? Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), 'portcullis builtin idp client secret', 32)).toString('base64url')
}

/** `idp_provider_url` of the built-in provider: as configured, else its listen address over http. */
function builtinIssuer(raw: Readonly<Record<string, unknown>>): string {
  return str(raw['idp_provider_url']) ?? `http://${str(raw['builtin_idp_address']) ?? DEFAULT_BUILTIN_ADDRESS}`
}

export async function startBuiltinIdpFromConfig(config: Config, sharedSecret: Buffer, logger: Logger): Promise<BuiltinIdp | undefined> {
  const raw = config.raw
  if (raw['idp_provider'] !== 'builtin') return undefined
  const usersFile = str(raw['builtin_idp_users_file'])
  if (usersFile === undefined) throw new Error('builtin_idp_users_file is required with idp_provider: builtin')
  const address = str(raw['builtin_idp_address']) ?? DEFAULT_BUILTIN_ADDRESS
  const m = /^(.*):(\d+)$/.exec(address)
  if (!m) throw new Error(`builtin_idp_address: expected host:port, got ${JSON.stringify(address)}`)
  const authenticate = new URL(str(raw['authenticate_service_url']) ?? '')
  const signoutRedirect = str(raw['signout_redirect_url'])
  const idp = await startBuiltinIdp({
    issuer: builtinIssuer(raw),
    host: (m[1] ?? '').replace(/^\[|\]$/g, '') || '0.0.0.0',
    port: Number(m[2]),
    usersFile,
    clients: [
      {
        clientId: str(raw['idp_client_id']) ?? BUILTIN_CLIENT_ID,
        clientSecret: builtinClientSecret(config, sharedSecret),
        redirectUris: [new URL('/oauth2/callback', authenticate).href],
        postLogoutRedirectUris: [new URL('/.pomerium/signed_out', authenticate).href, ...(signoutRedirect ? [signoutRedirect] : [])],
        name: 'Portcullis',
      },
    ],
    // Route hosts, any port and scheme: where the sign-in form's redirects end.
    formActionHosts: [...new Set(config.routes.map((r) => `${r.from.host}:*`))],
    secret: Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), 'portcullis builtin idp keys', 32)),
    logger: logger.child({ service: 'builtin-idp' }),
  })
  logger.info({ issuer: idp.issuer, usersFile }, 'built-in identity provider listening')
  return idp
}
