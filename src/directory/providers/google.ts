/**
 * Google Workspace through the Admin SDK Directory API (docs/directory.md), with a service
 * account that has domain-wide delegation for the read-only scopes below, acting as
 * `impersonate_user` (a Workspace administrator):
 *
 * - token: a JWT signed with the service account's key (`iss` = `client_email`, `sub` =
 *   `impersonate_user`, `scope`, `aud` = `token_uri`), exchanged at `token_uri` with
 *   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`;
 * - users: `GET /admin/directory/v1/users?customer=my_customer&maxResults=500` (suspended users
 *   are left out);
 * - groups: `GET /admin/directory/v1/groups?customer=my_customer&maxResults=200`;
 * - members: `GET /admin/directory/v1/groups/{id}/members?maxResults=200` (members of type
 *   `GROUP` are nested groups, resolved transitively by the directory copy).
 *
 * Pages follow `nextPageToken`. `idp_service_account` is the service account's JSON key file
 * plus `impersonate_user` (Pomerium's form).
 */
import { importPKCS8, SignJWT } from 'jose'

import { AccessTokenCache, DirectoryApiError } from '../http.js'
import type { DirectoryHttp } from '../http.js'
import type { DirectoryData, DirectoryGroupData, DirectoryProvider, DirectoryUserData } from '../provider.js'

export const GOOGLE_DIRECTORY_SCOPES = [
  'https://www.googleapis.com/auth/admin.directory.group.readonly',
  'https://www.googleapis.com/auth/admin.directory.user.readonly',
]
const MAX_PAGES = 100_000

export function createGoogleDirectory(account: Readonly<Record<string, string>>): DirectoryProvider {
  const api = (account['api_url'] ?? 'https://admin.googleapis.com').replace(/\/+$/, '')
  const tokenUri = account['token_url'] ?? account['token_uri'] ?? 'https://oauth2.googleapis.com/token'

  const tokens = new AccessTokenCache('Google', async (http) => {
    const key = await importPKCS8(account['private_key'] ?? '', 'RS256')
    const now = Math.floor(Date.now() / 1000)
    const assertion = await new SignJWT({ scope: GOOGLE_DIRECTORY_SCOPES.join(' ') })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(account['private_key_id'] ? { kid: account['private_key_id'] } : {}) })
      .setIssuer(account['client_email'] ?? '')
      .setSubject(account['impersonate_user'] ?? '')
      .setAudience(tokenUri)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(key)
    return http.json(tokenUri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
    })
  })
  const accessToken = (http: DirectoryHttp): Promise<string> => tokens.get(http)

  async function list(http: DirectoryHttp, path: string, field: string): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = []
    let pageToken: string | undefined
    for (let page = 0; ; page++) {
      if (page >= MAX_PAGES) throw new DirectoryApiError(`Google ${path}: too many pages`, undefined)
      const url = new URL(`${api}${path}`)
      if (pageToken) url.searchParams.set('pageToken', pageToken)
      const { body } = await http.json(url.href, { headers: { authorization: `Bearer ${await accessToken(http)}` } })
      const b = (body ?? {}) as Record<string, unknown>
      const items = b[field]
      if (items !== undefined && !Array.isArray(items)) throw new DirectoryApiError(`Google ${path}: ${field} is not a list`, undefined)
      out.push(...((items as Array<Record<string, unknown>> | undefined) ?? []))
      pageToken = typeof b['nextPageToken'] === 'string' && b['nextPageToken'] !== '' ? b['nextPageToken'] : undefined
      if (!pageToken) return out
    }
  }

  return {
    name: 'google',
    async read(http: DirectoryHttp): Promise<DirectoryData> {
      const users: DirectoryUserData[] = []
      for (const u of await list(http, '/admin/directory/v1/users?customer=my_customer&maxResults=500', 'users')) {
        if (typeof u['id'] !== 'string' || u['suspended'] === true || u['archived'] === true) continue
        const name = (u['name'] ?? {}) as Record<string, unknown>
        users.push({
          id: u['id'],
          email: typeof u['primaryEmail'] === 'string' ? u['primaryEmail'] : undefined,
          // The primary email is the Workspace account itself.
          emailVerified: typeof u['primaryEmail'] === 'string',
          displayName: typeof name['fullName'] === 'string' ? name['fullName'] : undefined,
        })
      }
      const groups: DirectoryGroupData[] = []
      for (const g of await list(http, '/admin/directory/v1/groups?customer=my_customer&maxResults=200', 'groups')) {
        if (typeof g['id'] !== 'string') continue
        const members = await list(http, `/admin/directory/v1/groups/${encodeURIComponent(g['id'])}/members?maxResults=200`, 'members')
        groups.push({
          id: g['id'],
          name: typeof g['name'] === 'string' ? g['name'] : g['id'],
          email: typeof g['email'] === 'string' ? g['email'] : undefined,
          memberIds: members.flatMap((m) => (typeof m['id'] === 'string' && m['type'] !== 'GROUP' && m['status'] !== 'SUSPENDED' ? [m['id']] : [])),
          nestedGroupIds: members.flatMap((m) => (typeof m['id'] === 'string' && m['type'] === 'GROUP' ? [m['id']] : [])),
        })
      }
      return { users, groups }
    },
  }
}
