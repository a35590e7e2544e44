/**
 * GitLab groups and subgroups as the directory (docs/directory.md), read with a personal,
 * group or service-account access token (`read_api`) sent as `PRIVATE-TOKEN`:
 *
 * - groups: `GET /api/v4/groups?per_page=100` (subgroups included; `full_path` is the name, as
 *   GitLab's own `groups` claims write it);
 * - members: `GET /api/v4/groups/{id}/members/all?per_page=100`, which includes the members a
 *   subgroup inherits from its ancestors (GitLab grants parent-group members access below);
 * - users: the members found (GitLab.com does not let a non-administrator list every user);
 *   blocked members (`state` other than `active`) are left out.
 *
 * Pages follow the `Link: rel="next"` header. The server is `idp_provider_url` (default
 * `https://gitlab.com`).
 */
import { listByLinks } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider, DirectoryUserData } from '../provider.js'


export function createGitLabDirectory(account: Readonly<Record<string, string>>, providerUrl: string | undefined): DirectoryProvider {
  const api = (account['api_url'] ?? `${new URL(providerUrl ?? 'https://gitlab.com').origin}/api/v4`).replace(/\/+$/, '')
  const headers = { 'private-token': account['private_token'] ?? '' }

  const list = (http: DirectoryHttp, path: string): Promise<Array<Record<string, unknown>>> =>
    listByLinks(http, `${api}${path}${path.includes('?') ? '&' : '?'}per_page=100`, headers, `GitLab ${path}`)

  return {
    name: 'gitlab',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const users = new Map<string, DirectoryUserData>()
      const groups: DirectoryGroupData[] = []
      for (const g of await list(http, '/groups')) {
        if (typeof g['id'] !== 'number') continue
        const members = await list(http, `/groups/${g['id']}/members/all`)
        const ids: string[] = []
        for (const m of members) {
          if (typeof m['id'] !== 'number' || (m['state'] !== undefined && m['state'] !== 'active')) continue
          const id = String(m['id'])
          ids.push(id)
          if (!users.has(id)) {
            const email = typeof m['email'] === 'string' ? m['email'] : typeof m['public_email'] === 'string' && m['public_email'] !== '' ? m['public_email'] : undefined
            // `email` is shown to administrators only; a `public_email` must be a verified one.
            users.set(id, { id, email, emailVerified: email !== undefined, displayName: typeof m['name'] === 'string' ? m['name'] : undefined })
          }
        }
        groups.push({ id: String(g['id']), name: typeof g['full_path'] === 'string' ? g['full_path'] : String(g['id']), memberIds: ids })
      }
      return { users: [...users.values()], groups }
    },
  }
}
