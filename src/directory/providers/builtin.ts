/**
 * The built-in provider's users file as a directory (docs/directory.md): its top-level `groups:`
 * (ids and names) and each user's `groups`, read again at every sync, so editing the file changes
 * group membership without anyone signing out. A file that does not parse fails the sync (the
 * last good read stays in effect). The file is also watched, so an edit is synced within
 * seconds rather than at the next interval.
 */
import { unwatchFile, watchFile } from 'node:fs'

import { loadUsersFile } from '../../builtin-idp/users.js'
import type { DirectoryData, DirectoryProvider } from '../provider.js'

export function createBuiltinDirectory(usersFile: string): DirectoryProvider {
  return {
    name: 'builtin',
    read(): Promise<DirectoryData> {
      const file = loadUsersFile(usersFile)
      return Promise.resolve({
        users: file.users.filter((u) => !u.disabled).map((u) => ({ id: u.sub, email: u.email, emailVerified: true, displayName: u.name })),
        groups: file.groups.map((g) => ({ id: g.id, name: g.name, memberIds: g.memberSubs })),
      })
    },
    watch(changed) {
      const listener = (): void => changed()
      watchFile(usersFile, { persistent: false, interval: 1000 }, listener)
      return () => unwatchFile(usersFile, listener)
    },
  }
}
