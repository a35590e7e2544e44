/**
 * Auth0 roles as the directory's groups (docs/directory.md), through the Management API with a
 * machine-to-machine application (`read:roles`, `read:users`):
 *
 * - token: `POST https://{domain}/oauth/token` (`client_credentials`, `audience` =
 *   `https://{domain}/api/v2/`);
 * - roles: `GET /api/v2/roles?per_page=100&page=N&include_totals=true`;
 * - members: `GET /api/v2/roles/{id}/users?take=100` with checkpoint pagination (`from` = the
 *   previous answer's `next`), which has no 1,000-result ceiling.
 *
 * Users are the role members found (`user_id`, the `sub` of an Auth0 session). The tenant is
 * `idp_provider_url` (for example `https://example.us.auth0.com/`).
 */
import { AccessTokenCache, DirectoryApiError } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider, DirectoryUserData } from '../provider.js'

const MAX_PAGES = 100_000

export function createAuth0Directory(account: Readonly<Record<string, string>>, providerUrl: string | undefined): DirectoryProvider {
  const origin = new URL(account['api_url'] ?? providerUrl ?? 'https://invalid.auth0.com').origin

  const tokens = new AccessTokenCache('Auth0', async (http) => {
    return http.json(`${origin}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials', client_id: account['client_id'], client_secret: account['client_secret'], audience: `${origin}/api/v2/` }),
    })
  })
  const accessToken = (http: DirectoryHttp): Promise<string> => tokens.get(http)

  async function get(http: DirectoryHttp, url: string): Promise<Record<string, unknown>> {
    const { body } = await http.json(url, { headers: { authorization: `Bearer ${await accessToken(http)}` } })
    if (typeof body !== 'object' || body === null) throw new DirectoryApiError(`Auth0 ${new URL(url).pathname}: expected an object`, undefined)
    return body as Record<string, unknown>
  }

  return {
    name: 'auth0',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const roles: Array<Record<string, unknown>> = []
      for (let page = 0; ; page++) {
        if (page >= MAX_PAGES) throw new DirectoryApiError('Auth0 roles: too many pages', undefined)
        const b = await get(http, `${origin}/api/v2/roles?per_page=100&page=${page}&include_totals=true`)
        const list = Array.isArray(b['roles']) ? (b['roles'] as Array<Record<string, unknown>>) : []
        roles.push(...list)
        const total = typeof b['total'] === 'number' ? b['total'] : roles.length
        if (list.length === 0 || roles.length >= total) break
      }
      const users = new Map<string, DirectoryUserData>()
      const groups: DirectoryGroupData[] = []
      for (const role of roles) {
        if (typeof role['id'] !== 'string') continue
        const ids: string[] = []
        let from: string | undefined
        for (let page = 0; ; page++) {
          if (page >= MAX_PAGES) throw new DirectoryApiError('Auth0 role users: too many pages', undefined)
          const url = new URL(`${origin}/api/v2/roles/${encodeURIComponent(role['id'])}/users`)
          url.searchParams.set('take', '100')
          if (from) url.searchParams.set('from', from)
          const b = await get(http, url.href)
          for (const u of Array.isArray(b['users']) ? (b['users'] as Array<Record<string, unknown>>) : []) {
            if (typeof u['user_id'] !== 'string') continue
            ids.push(u['user_id'])
            users.set(u['user_id'], { id: u['user_id'], email: typeof u['email'] === 'string' ? u['email'] : undefined, displayName: typeof u['name'] === 'string' ? u['name'] : undefined })
          }
          from = typeof b['next'] === 'string' && b['next'] !== '' ? b['next'] : undefined
          if (!from) break
        }
        groups.push({ id: role['id'], name: typeof role['name'] === 'string' ? role['name'] : role['id'], memberIds: ids })
      }
      return { users: [...users.values()], groups }
    },
  }
}
