/**
 * Okta's directory through its management API (docs/directory.md), with an API token
 * (`Authorization: SSWS <api_key>`, read-only administrator is enough):
 *
 * - users: `GET /api/v1/users?limit=200` (Okta leaves deprovisioned users out; suspended,
 *   locked-out and deprovisioned statuses are skipped here too: they lose their groups);
 * - groups: `GET /api/v1/groups?limit=200` (`profile.name`);
 * - members: `GET /api/v1/groups/{id}/users?limit=1000` for each group.
 *
 * Pages follow the `Link: <…>; rel="next"` header (cursor `after`). Throttling: 429 with
 * `X-Rate-Limit-Remaining: 0` and `X-Rate-Limit-Reset` (epoch seconds) waits until the reset.
 * The org is `idp_provider_url` (for example `https://example.okta.com`).
 */
import { listByLinks } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider, DirectoryUserData } from '../provider.js'

const INACTIVE = new Set(['SUSPENDED', 'DEPROVISIONED', 'LOCKED_OUT'])

export function createOktaDirectory(account: Readonly<Record<string, string>>, providerUrl: string): DirectoryProvider {
  const origin = new URL(account['api_url'] ?? providerUrl).origin
  const headers = { authorization: `SSWS ${account['api_key'] ?? ''}` }

  const list = (http: DirectoryHttp, path: string): Promise<Array<Record<string, unknown>>> => listByLinks(http, `${origin}${path}`, headers, `Okta ${path}`)

  return {
    name: 'okta',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const users: DirectoryUserData[] = []
      for (const u of await list(http, '/api/v1/users?limit=200')) {
        const id = u['id']
        if (typeof id !== 'string' || INACTIVE.has(String(u['status']))) continue
        const profile = (u['profile'] ?? {}) as Record<string, unknown>
        const email = typeof profile['email'] === 'string' ? profile['email'] : undefined
        const name = [profile['firstName'], profile['lastName']].filter((x) => typeof x === 'string' && x !== '').join(' ')
        // Okta says whether an address is verified in credentials.emails[].status.
        const emails = ((u['credentials'] as { emails?: unknown } | undefined)?.emails ?? []) as Array<{ value?: unknown; status?: unknown }>
        const emailVerified = email !== undefined && emails.some((e) => typeof e.value === 'string' && e.value.toLowerCase() === email.toLowerCase() && e.status === 'VERIFIED')
        users.push({ id, email, emailVerified, displayName: name || undefined })
      }
      const groups: DirectoryGroupData[] = []
      for (const g of await list(http, '/api/v1/groups?limit=200')) {
        const id = g['id']
        if (typeof id !== 'string') continue
        const profile = (g['profile'] ?? {}) as Record<string, unknown>
        const members = await list(http, `/api/v1/groups/${encodeURIComponent(id)}/users?limit=1000`)
        groups.push({
          id,
          name: typeof profile['name'] === 'string' ? profile['name'] : id,
          memberIds: members.flatMap((m) => (typeof m['id'] === 'string' ? [m['id']] : [])),
        })
      }
      return { users, groups }
    },
  }
}
