/** What every directory provider returns: the whole directory, read in one sync. */
import type { DirectoryHttp } from './http.js'

export interface DirectoryUserData {
  readonly id: string
  readonly email?: string | undefined
  /** The provider vouches for the email (administrator-managed or verified). */
  readonly emailVerified?: boolean | undefined
  readonly displayName?: string | undefined
}

export interface DirectoryGroupData {
  readonly id: string
  readonly name: string
  readonly email?: string | undefined
  /** Members: user ids. */
  readonly memberIds: readonly string[]
  /** Groups nested in this one (their members count as this group's). */
  readonly nestedGroupIds?: readonly string[] | undefined
}

export interface DirectoryData {
  readonly users: readonly DirectoryUserData[]
  readonly groups: readonly DirectoryGroupData[]
}

export interface DirectoryProvider {
  /** `google`, `azure`, `okta`, `github`, `builtin`. */
  readonly name: string
  /**
   * Reads every user and group. Throws when any page fails: a part-read directory would drop
   * members, so the last complete read stays in effect.
   */
  read(http: DirectoryHttp): Promise<DirectoryData>
  /** Calls `changed` when the source changes between syncs (the users file); returns a stop. */
  watch?(changed: () => void): () => void
}
