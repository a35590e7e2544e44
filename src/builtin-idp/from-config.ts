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

/** The client secret Portcullis uses with the built-in provider when none is configured. */
export function builtinClientSecret(config: Config, sharedSecret: Buffer): string {
  return config.idp.clientSecret ?? Buffer.from(hkdfSync('sha256', sharedSecret, Buffer.alloc(0), 'portcullis builtin idp client secret', 32)).toString('base64url')
}

/** `idp_provider_url` of the built-in provider: as configured, else its listen address over http. */
export function builtinIssuer(config: Config): string {
  return config.idp.providerUrl ?? `http://${config.builtinIdp.address}`
}

export async function startBuiltinIdpFromConfig(config: Config, sharedSecret: Buffer, logger: Logger): Promise<BuiltinIdp | undefined> {
  if (config.idp.provider !== 'builtin') return undefined
  // The loader requires the users file with idp_provider: builtin and checks the address.
  const usersFile = config.builtinIdp.usersFile
  if (usersFile === undefined) throw new Error('builtin_idp_users_file is required with idp_provider: builtin')
  const authenticate = new URL(config.authenticateServiceUrl)
  const signoutRedirect = config.signoutRedirectUrl
  const idp = await startBuiltinIdp({
    issuer: builtinIssuer(config),
    host: config.builtinIdp.host || '0.0.0.0',
    port: config.builtinIdp.port,
    usersFile,
    clients: [
      {
        clientId: config.idp.clientId ?? BUILTIN_CLIENT_ID,
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
