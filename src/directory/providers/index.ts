/** The directory provider of a config: the built-in users file, or `idp_provider`'s API. */
import type { Config } from '../../config/types.js'
import type { DirectoryProvider } from '../provider.js'
import { createAuth0Directory } from './auth0.js'
import { createAzureDirectory } from './azure.js'
import { createBuiltinDirectory } from './builtin.js'
import { createGitHubDirectory } from './github.js'
import { createGitLabDirectory } from './gitlab.js'
import { createGoogleDirectory } from './google.js'
import { createKeycloakDirectory } from './keycloak.js'
import { createOktaDirectory } from './okta.js'
import { createOneLoginDirectory } from './onelogin.js'

export function createDirectoryProvider(config: Config): DirectoryProvider | undefined {
  if (config.idp.provider === 'builtin' && config.builtinIdp.usersFile) return createBuiltinDirectory(config.builtinIdp.usersFile)
  const s = config.directory.sync
  if (!s) return undefined
  switch (s.provider) {
    case 'google':
      return createGoogleDirectory(s.account)
    case 'azure':
      return createAzureDirectory(s.account)
    case 'okta':
      return createOktaDirectory(s.account, s.providerUrl ?? '')
    case 'github':
      return createGitHubDirectory(s.account, s.providerUrl)
    case 'gitlab':
      return createGitLabDirectory(s.account, s.providerUrl)
    case 'auth0':
      return createAuth0Directory(s.account, s.providerUrl)
    case 'onelogin':
      return createOneLoginDirectory(s.account, s.providerUrl)
    case 'keycloak':
      return createKeycloakDirectory(s.account, s.providerUrl)
    default:
      return undefined
  }
}
