/**
 * Microsoft Entra ID through Microsoft Graph (docs/directory.md), with the application
 * (client-credentials) permissions `User.Read.All` and `GroupMember.Read.All`:
 *
 * - token: `POST {login}/{directory_id}/oauth2/v2.0/token` (`grant_type=client_credentials`,
 *   `scope=https://graph.microsoft.com/.default`); reused until a minute before it expires.
 * - users: `GET /v1.0/users/delta?$select=id,displayName,mail,userPrincipalName,accountEnabled`;
 *   groups with their direct members: `GET /v1.0/groups/delta?$select=displayName,mail,members`.
 *   Pages follow `@odata.nextLink`; the last page's `@odata.deltaLink` is kept, and later syncs
 *   read only the changes from it (`@removed` objects, `members@delta` additions and removals).
 *   A delta link the service no longer knows (410, `syncStateNotFound`) starts a full read again.
 * - nested groups: a group member of a group is kept as a member id; the directory copy resolves
 *   membership transitively, as Graph's `transitiveMembers` would.
 * - disabled accounts (`accountEnabled: false`) are left out: they lose their groups.
 */
import { AccessTokenCache, DirectoryApiError } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryProvider } from '../provider.js'

interface AzureAccount {
  readonly client_id: string
  readonly client_secret: string
  readonly directory_id: string
  /** Default `https://graph.microsoft.com` (national clouds and tests set it). */
  readonly api_url?: string
  /** Default `https://login.microsoftonline.com`. */
  readonly login_url?: string
}

interface GroupState {
  name: string
  email: string | undefined
  /** User members. */
  members: Set<string>
  /** Group members (nested groups). */
  nested: Set<string>
}

interface UserState {
  email: string | undefined
  displayName: string | undefined
}

interface DeltaState {
  users: Map<string, UserState>
  groups: Map<string, GroupState>
  usersLink: string | undefined
  groupsLink: string | undefined
}

const PAGE_LIMIT = 100_000

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '')
}

export function createAzureDirectory(account: Readonly<Record<string, string>>): DirectoryProvider {
  const a = account as unknown as AzureAccount
  const api = trimSlash(a.api_url ?? 'https://graph.microsoft.com')
  const login = trimSlash(a.login_url ?? 'https://login.microsoftonline.com')
  let state: DeltaState | undefined

  const tokens = new AccessTokenCache('Entra ID', async (http) => {
    const body = new URLSearchParams({ client_id: a.client_id, client_secret: a.client_secret, scope: `${api}/.default`, grant_type: 'client_credentials' })
    return http.json(`${login}/${encodeURIComponent(a.directory_id)}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    })
  })
  const accessToken = (http: DirectoryHttp): Promise<string> => tokens.get(http)

  /** Every page of one delta round: the items and the delta link for the next round. */
  async function deltaRound(http: DirectoryHttp, start: string, onItem: (item: Record<string, unknown>) => void): Promise<string> {
    let url: string | undefined = start
    for (let page = 0; url; page++) {
      if (page >= PAGE_LIMIT) throw new DirectoryApiError(`Graph ${new URL(start).pathname}: too many pages`, undefined)
      const { body } = await http.json(url, { headers: { authorization: `Bearer ${await accessToken(http)}` } })
      const b = body as { value?: unknown; '@odata.nextLink'?: unknown; '@odata.deltaLink'?: unknown }
      if (!Array.isArray(b.value)) throw new DirectoryApiError(`Graph ${new URL(start).pathname}: no value list`, undefined)
      for (const item of b.value) if (typeof item === 'object' && item !== null) onItem(item as Record<string, unknown>)
      const next = typeof b['@odata.nextLink'] === 'string' ? b['@odata.nextLink'] : undefined
      if (next) {
        checkSameOrigin(next)
        url = next
        continue
      }
      const delta = b['@odata.deltaLink']
      if (typeof delta !== 'string') throw new DirectoryApiError(`Graph ${new URL(start).pathname}: the last page has no @odata.deltaLink`, undefined)
      checkSameOrigin(delta)
      return delta
    }
    throw new DirectoryApiError('Graph: empty delta round', undefined)
  }

  function checkSameOrigin(link: string): void {
    // The access token goes with the next request: never to another host.
    if (new URL(link).origin !== new URL(api).origin) throw new DirectoryApiError(`Graph paging link leaves ${new URL(api).origin}`, undefined)
  }

  async function sync(http: DirectoryHttp, from: DeltaState | undefined): Promise<DeltaState> {
    // Work on copies: a round that fails part-way leaves the last complete state.
    const users = new Map(from?.users ?? [])
    const groups = new Map([...(from?.groups ?? [])].map(([id, g]) => [id, { ...g, members: new Set(g.members), nested: new Set(g.nested) }]))
    const usersStart = from?.usersLink ?? `${api}/v1.0/users/delta?$select=id,displayName,mail,userPrincipalName,accountEnabled`
    const usersLink = await deltaRound(http, usersStart, (u) => {
      const id = typeof u['id'] === 'string' ? u['id'] : undefined
      if (!id) return
      if (u['@removed'] !== undefined || u['accountEnabled'] === false) {
        users.delete(id)
        return
      }
      const prev = users.get(id)
      const mail = typeof u['mail'] === 'string' ? u['mail'] : typeof u['userPrincipalName'] === 'string' ? u['userPrincipalName'] : prev?.email
      const displayName = typeof u['displayName'] === 'string' ? u['displayName'] : prev?.displayName
      users.set(id, { email: mail, displayName })
    })
    const groupsStart = from?.groupsLink ?? `${api}/v1.0/groups/delta?$select=displayName,mail,members`
    const groupsLink = await deltaRound(http, groupsStart, (g) => {
      const id = typeof g['id'] === 'string' ? g['id'] : undefined
      if (!id) return
      if (g['@removed'] !== undefined) {
        groups.delete(id)
        return
      }
      let group = groups.get(id)
      if (!group) {
        group = { name: id, email: undefined, members: new Set(), nested: new Set() }
        groups.set(id, group)
      }
      if (typeof g['displayName'] === 'string') group.name = g['displayName']
      if (typeof g['mail'] === 'string') group.email = g['mail']
      const changes = g['members@delta']
      if (Array.isArray(changes)) {
        for (const m of changes as Array<Record<string, unknown>>) {
          if (typeof m?.['id'] !== 'string') continue
          const target = m['@odata.type'] === '#microsoft.graph.group' ? group.nested : group.members
          if (m['@removed'] !== undefined) target.delete(m['id'])
          else target.add(m['id'])
        }
      }
    })
    return { users, groups, usersLink, groupsLink }
  }

  return {
    name: 'azure',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      let next: DeltaState
      try {
        next = await sync(http, state)
      } catch (err) {
        if (state && err instanceof DirectoryApiError && err.status === 410) next = await sync(http, undefined)
        else throw err
      }
      state = next
      return {
        // mail and userPrincipalName are set by the tenant's administrators.
        users: [...next.users].map(([id, u]) => ({ id, email: u.email, emailVerified: u.email !== undefined, displayName: u.displayName })),
        groups: [...next.groups].map(([id, g]) => ({ id, name: g.name, email: g.email, memberIds: [...g.members], nestedGroupIds: [...g.nested] })),
      }
    },
  }
}
