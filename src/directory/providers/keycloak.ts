/**
 * Keycloak groups as the directory (docs/directory.md), through the admin REST API with a
 * confidential client whose service account has the `realm-management` roles `view-users` and
 * `query-groups`:
 *
 * - token: `POST {realm}/protocol/openid-connect/token` (`client_credentials`);
 * - users: `GET /admin/realms/{realm}/users?first=N&max=100` (disabled users left out);
 * - groups: `GET /admin/realms/{realm}/groups?first=N&max=100&briefRepresentation=true`, and each
 *   group's subgroups from `GET /admin/realms/{realm}/groups/{id}/children` (Keycloak 23+; older
 *   servers inline `subGroups`, which are read too);
 * - members: `GET /admin/realms/{realm}/groups/{id}/members?first=N&max=100` (direct members);
 *   a subgroup is a member of its parent, so its members count as the parent's, as Keycloak's
 *   group inheritance grants.
 *
 * Pages advance `first` by what the last page held until an empty page (a server may cap `max`
 * below what was asked). The realm is `idp_provider_url`
 * (`https://keycloak.example.com/realms/acme`).
 */
import { AccessTokenCache, DirectoryApiError } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider, DirectoryUserData } from '../provider.js'

const PAGE = 100
const MAX_PAGES = 100_000

export function createKeycloakDirectory(account: Readonly<Record<string, string>>, providerUrl: string | undefined): DirectoryProvider {
  const realmUrl = new URL(account['api_url'] ?? providerUrl ?? 'https://invalid/realms/invalid')
  const m = /^(.*)\/realms\/([^/]+)\/?$/.exec(realmUrl.pathname)
  if (!m) throw new DirectoryApiError('keycloak: idp_provider_url must be the realm URL (…/realms/<realm>)', undefined)
  const realmPath = `${realmUrl.origin}${m[1]}/realms/${m[2]}`
  const admin = `${realmUrl.origin}${m[1]}/admin/realms/${m[2]}`

  const tokens = new AccessTokenCache('Keycloak', async (http) => {
    return http.json(`${realmPath}/protocol/openid-connect/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: account['client_id'] ?? '', client_secret: account['client_secret'] ?? '' }).toString(),
    })
  }, 300)
  const accessToken = (http: DirectoryHttp): Promise<string> => tokens.get(http)

  async function list(http: DirectoryHttp, path: string): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = []
    for (let page = 0; ; page++) {
      if (page >= MAX_PAGES) throw new DirectoryApiError(`Keycloak ${path}: too many pages`, undefined)
      const url = new URL(`${admin}${path}`)
      url.searchParams.set('first', String(out.length))
      url.searchParams.set('max', String(PAGE))
      const answer = await http.json(url.href, { headers: { authorization: `Bearer ${await accessToken(http)}` } })
      if (!Array.isArray(answer.body)) throw new DirectoryApiError(`Keycloak ${path}: expected a JSON array`, answer.status)
      if (answer.body.length === 0) return out
      out.push(...(answer.body as Array<Record<string, unknown>>))
    }
  }

  return {
    name: 'keycloak',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const users: DirectoryUserData[] = []
      for (const u of await list(http, '/users')) {
        if (typeof u['id'] !== 'string' || u['enabled'] === false) continue
        const name = [u['firstName'], u['lastName']].filter((x) => typeof x === 'string' && x !== '').join(' ')
        users.push({ id: u['id'], email: typeof u['email'] === 'string' ? u['email'] : undefined, emailVerified: u['emailVerified'] === true, displayName: name || (typeof u['username'] === 'string' ? u['username'] : undefined) })
      }
      const groups: DirectoryGroupData[] = []
      const visit = async (g: Record<string, unknown>, depth: number): Promise<void> => {
        if (typeof g['id'] !== 'string' || depth > 32) return
        const id = g['id']
        const members = await list(http, `/groups/${encodeURIComponent(id)}/members`)
        const inline = Array.isArray(g['subGroups']) ? (g['subGroups'] as Array<Record<string, unknown>>) : []
        const children = inline.length > 0 || g['subGroupCount'] === 0 ? inline : await list(http, `/groups/${encodeURIComponent(id)}/children`)
        groups.push({
          id,
          name: typeof g['path'] === 'string' ? g['path'] : typeof g['name'] === 'string' ? g['name'] : id,
          memberIds: members.flatMap((mem) => (typeof mem['id'] === 'string' ? [mem['id']] : [])),
          nestedGroupIds: children.flatMap((c) => (typeof c['id'] === 'string' ? [c['id']] : [])),
        })
        for (const c of children) await visit(c, depth + 1)
      }
      for (const g of await list(http, '/groups?briefRepresentation=true')) await visit(g, 0)
      return { users, groups }
    },
  }
}
