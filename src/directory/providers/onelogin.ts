/**
 * OneLogin roles as the directory's groups (docs/directory.md), through API v2 with API
 * credentials of "Read users" scope:
 *
 * - token: `POST /auth/oauth2/v2/token` with the client id and secret as HTTP basic credentials
 *   and `{"grant_type":"client_credentials"}`;
 * - users: `GET /api/2/users?limit=1000` (state 1 = active; others are left out);
 * - roles: `GET /api/2/roles?limit=1000`; members: `GET /api/2/roles/{id}/users?limit=1000`.
 *
 * Pages follow the `After-Cursor` response header (`cursor` parameter). The account is
 * `idp_provider_url` (for example `https://example.onelogin.com/oidc/2`); the API is its origin.
 */
import { AccessTokenCache, DirectoryApiError } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider, DirectoryUserData } from '../provider.js'

const MAX_PAGES = 100_000

export function createOneLoginDirectory(account: Readonly<Record<string, string>>, providerUrl: string | undefined): DirectoryProvider {
  const origin = new URL(account['api_url'] ?? providerUrl ?? 'https://invalid.onelogin.com').origin

  const tokens = new AccessTokenCache('OneLogin', async (http) => {
    const basic = Buffer.from(`${account['client_id'] ?? ''}:${account['client_secret'] ?? ''}`).toString('base64')
    return http.json(`${origin}/auth/oauth2/v2/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'client_credentials' }),
    })
  })
  const accessToken = (http: DirectoryHttp): Promise<string> => tokens.get(http)

  async function list(http: DirectoryHttp, path: string): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = []
    let cursor: string | undefined
    for (let page = 0; ; page++) {
      if (page >= MAX_PAGES) throw new DirectoryApiError(`OneLogin ${path}: too many pages`, undefined)
      const url = new URL(`${origin}${path}`)
      if (cursor) url.searchParams.set('cursor', cursor)
      const answer = await http.json(url.href, { headers: { authorization: `Bearer ${await accessToken(http)}` } })
      if (!Array.isArray(answer.body)) throw new DirectoryApiError(`OneLogin ${path}: expected a JSON array`, answer.status)
      out.push(...(answer.body as Array<Record<string, unknown>>))
      cursor = answer.headers.get('after-cursor') ?? undefined
      if (!cursor) return out
    }
  }

  return {
    name: 'onelogin',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const users: DirectoryUserData[] = []
      for (const u of await list(http, '/api/2/users?limit=1000')) {
        if (typeof u['id'] !== 'number' || (u['state'] !== undefined && u['state'] !== 1)) continue
        const name = [u['firstname'], u['lastname']].filter((x) => typeof x === 'string' && x !== '').join(' ')
        // OneLogin emails are set by the account's administrators.
        users.push({ id: String(u['id']), email: typeof u['email'] === 'string' ? u['email'] : undefined, emailVerified: typeof u['email'] === 'string', displayName: name || undefined })
      }
      const groups: DirectoryGroupData[] = []
      for (const r of await list(http, '/api/2/roles?limit=1000')) {
        if (typeof r['id'] !== 'number') continue
        const members = await list(http, `/api/2/roles/${r['id']}/users?limit=1000`)
        groups.push({
          id: String(r['id']),
          name: typeof r['name'] === 'string' ? r['name'] : String(r['id']),
          memberIds: members.flatMap((m) => (typeof m['id'] === 'number' ? [String(m['id'])] : [])),
        })
      }
      return { users, groups }
    },
  }
}
