/**
 * GitHub organisations' teams as the directory (docs/directory.md), read with a personal access
 * token (`read:org`) of a member of each organisation:
 *
 * - organisations: `GET /user/orgs`; members: `GET /orgs/{org}/members`;
 * - teams: `GET /orgs/{org}/teams`; members: `GET /orgs/{org}/teams/{slug}/members`, which per
 *   GitHub's documentation includes the members of child teams (nested teams).
 *
 * A team is a group with the numeric team id as its id and `org/slug` as its name, the same
 * name the GitHub sign-in puts in the `groups` claim. Users are keyed by their numeric id, the
 * `sub` of a GitHub session. Pages follow `Link: rel="next"` (`per_page=100`); a 403 or 429 with
 * `X-RateLimit-Remaining: 0` waits for `X-RateLimit-Reset` (or `Retry-After`).
 * `idp_provider_url` selects GitHub Enterprise Server (`<url>/api/v3`).
 */
import { listByLinks } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider } from '../provider.js'


export function githubApiRoot(providerUrl: string | undefined): string {
  if (!providerUrl) return 'https://api.github.com'
  const u = new URL(providerUrl)
  if (u.origin === 'https://github.com') return 'https://api.github.com'
  if (u.protocol === 'https:' && u.hostname.endsWith('.ghe.com')) return `https://api.${u.host}`
  return `${u.origin}/api/v3`
}

export function createGitHubDirectory(account: Readonly<Record<string, string>>, providerUrl: string | undefined): DirectoryProvider {
  const api = (account['api_url'] ?? githubApiRoot(providerUrl)).replace(/\/+$/, '')
  const headers = {
    accept: 'application/vnd.github+json',
    authorization: `Bearer ${account['personal_access_token'] ?? ''}`,
    'x-github-api-version': '2022-11-28',
    'user-agent': 'Portcullis',
  }

  const list = (http: DirectoryHttp, path: string): Promise<Array<Record<string, unknown>>> =>
    listByLinks(http, `${api}${path}${path.includes('?') ? '&' : '?'}per_page=100`, headers, `GitHub ${path}`)

  return {
    name: 'github',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const users = new Map<string, { id: string; displayName: string | undefined }>()
      const groups: DirectoryGroupData[] = []
      for (const org of await list(http, '/user/orgs')) {
        const login = org['login']
        if (typeof login !== 'string') continue
        const o = encodeURIComponent(login)
        for (const m of await list(http, `/orgs/${o}/members`)) {
          if (typeof m['id'] === 'number') users.set(String(m['id']), { id: String(m['id']), displayName: typeof m['login'] === 'string' ? m['login'] : undefined })
        }
        for (const team of await list(http, `/orgs/${o}/teams`)) {
          if (typeof team['id'] !== 'number' || typeof team['slug'] !== 'string') continue
          const members = await list(http, `/orgs/${o}/teams/${encodeURIComponent(team['slug'])}/members`)
          groups.push({
            id: String(team['id']),
            name: `${login}/${team['slug']}`,
            memberIds: members.flatMap((m) => (typeof m['id'] === 'number' ? [String(m['id'])] : [])),
          })
        }
      }
      return { users: [...users.values()], groups }
    },
  }
}
