/**
 * The built-in identity provider's users, from a YAML file the operator edits by hand (or with
 * `portcullis users add`):
 *
 * ```yaml
 * users:
 *   - email: ada@example.com
 *     name: Ada Lovelace
 *     groups: [admins, engineering]
 *     claims: { department: research }
 *     password_hash: $argon2id$v=19$m=19456,t=2,p=1$...$...
 *     totp_secret: JBSWY3DPEHPK3PXP   # optional: asks for a code after the password
 *     disabled: false                 # optional
 *     id: ada                         # optional: the `sub`; default derived from the email
 * ```
 *
 * Every problem in the file is reported at once, each naming the file, line, entry and what was
 * expected, because a half-loaded users file would lock people out one at a time.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

import { LineCounter, parseDocument } from 'yaml'

import { parsePhc } from './password.js'
import type { Argon2Params } from './password.js'
import { base32Decode } from './totp.js'
import { CodedError } from '../shared/errors.js'

export interface BuiltinUser {
  /** The subject (`sub`): `id` from the file, else {@link subjectFor} of the email. */
  readonly sub: string
  /** As written in the file; `emailKey` is what lookups compare. */
  readonly email: string
  readonly emailKey: string
  readonly name: string
  readonly groups: readonly string[]
  /** Extra claims, released with the `profile` scope. */
  readonly claims: Readonly<Record<string, unknown>>
  readonly passwordHash: string
  /** Base32 TOTP secret; when set, sign-in asks for a code after the password. */
  readonly totpSecret: string | undefined
  readonly disabled: boolean
}

export interface UserDirectory {
  readonly file: string
  readonly users: readonly BuiltinUser[]
  /** Looks up by canonical email (see {@link canonicalEmail}). */
  byEmail(email: string): BuiltinUser | undefined
  bySub(sub: string): BuiltinUser | undefined
  /** The cost parameters of the first user's hash, so a check for an unknown email costs the same. */
  readonly typicalHashParams: Argon2Params | undefined
  /** Every extra claim name any user carries. */
  readonly claimNames: ReadonlySet<string>
  /**
   * The file's directory groups (top-level `groups:` with ids and names, docs/directory.md),
   * plus one group (id = name) for every name users list that is not declared there.
   */
  readonly groups: readonly BuiltinGroup[]
}

/** A group of the users file's directory. */
export interface BuiltinGroup {
  readonly id: string
  readonly name: string
  /** Subjects of the members. */
  readonly memberSubs: readonly string[]
}

/** Every problem of one users file. `message` lists them, one a line. */
export class UsersFileError extends CodedError {
  readonly code = 'ERR_USERS_FILE_INVALID'
  readonly file: string
  readonly problems: readonly string[]

  constructor(file: string, problems: readonly string[]) {
    super(`users file ${file} is invalid:\n  ${problems.join('\n  ')}`)
    this.name = 'UsersFileError'
    this.file = file
    this.problems = problems
  }
}

/** Emails are compared trimmed, NFKC-normalised and lower-cased (the same key rate limits use). */
export function canonicalEmail(email: string): string {
  return email.trim().normalize('NFKC').toLowerCase()
}

/**
 * The default subject of a user: the first 22 characters (132 bits) of the base64url SHA-256 of
 * the canonical email. Stable across restarts and file edits; it changes only with the email,
 * which is why an explicit `id` can pin it.
 */
export function subjectFor(email: string): string {
  return createHash('sha256').update(canonicalEmail(email)).digest('base64url').slice(0, 22)
}

/**
 * Claims a user's `claims:` may not set: the provider sets these itself, and letting the file
 * override them would let an entry impersonate another user or forge token metadata.
 */
const RESERVED_CLAIMS: ReadonlySet<string> = new Set([
  'sub', 'email', 'email_verified', 'name', 'groups',
  'iss', 'aud', 'exp', 'iat', 'nbf', 'jti', 'nonce', 'azp', 'auth_time', 'acr', 'amr', 'sid',
  'at_hash', 'c_hash', 's_hash', 'scope', 'client_id', 'cnf', '_claim_names', '_claim_sources',
])

const KEYS = new Set(['id', 'email', 'name', 'groups', 'claims', 'password_hash', 'totp_secret', 'disabled'])

/** Reads and parses a users file. @throws {UsersFileError} */
export function loadUsersFile(file: string): UserDirectory {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsersFileError(file, [`cannot be read: ${err instanceof Error ? err.message : String(err)}`])
  }
  return parseUsers(text, file)
}

/** Parses users file text; `file` only names it in errors. @throws {UsersFileError} */
export function parseUsers(text: string, file: string): UserDirectory {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new UsersFileError(file, doc.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0] ?? e.message}`))
  }
  const where = (path: readonly (string | number)[]): string => {
    const node: unknown = doc.getIn(path, true)
    const offset = (node as { range?: [number, number, number] } | undefined)?.range?.[0]
    return offset === undefined ? '' : `line ${lineCounter.linePos(offset).line}: `
  }
  const problems: string[] = []
  const problem = (path: readonly (string | number)[], message: string): void => {
    problems.push(`${where(path)}${pathText(path)}: ${message}`)
  }

  let root: unknown
  try {
    root = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    throw new UsersFileError(file, [`YAML: ${err instanceof Error ? err.message : String(err)}`])
  }
  if (!isRecord(root)) throw new UsersFileError(file, ['expected a mapping with a top-level "users:" list'])
  for (const key of Object.keys(root)) {
    if (key !== 'users' && key !== 'groups') problem([key], 'unknown top-level key (expected "users" and, optionally, "groups")')
  }
  const declared = parseGroups(root.groups, problem)
  const list = root.users
  if (list !== null && list !== undefined && !Array.isArray(list)) {
    problem(['users'], `expected a list of users, got ${describeValue(list)}`)
  }
  if (list === undefined) problems.push('missing the top-level "users:" list')

  const users: BuiltinUser[] = []
  const seenEmails = new Map<string, number>()
  const seenSubs = new Map<string, number>()
  for (const [index, entry] of (Array.isArray(list) ? (list as unknown[]) : []).entries()) {
    const at = (key?: string): (string | number)[] => (key === undefined ? ['users', index] : ['users', index, key])
    if (!isRecord(entry)) {
      problem(at(), `expected a mapping with at least "email" and "password_hash", got ${describeValue(entry)}`)
      continue
    }
    const before = problems.length
    for (const key of Object.keys(entry)) {
      if (!KEYS.has(key)) problem(at(key), `unknown key (expected one of ${[...KEYS].join(', ')})`)
    }

    const email = entry.email
    let emailKey = ''
    if (typeof email !== 'string' || !isEmail(email)) {
      problem(at('email'), `required: an email address like "ada@example.com", got ${describeValue(email)}`)
    } else {
      emailKey = canonicalEmail(email)
      const first = seenEmails.get(emailKey)
      if (first !== undefined) problem(at('email'), `${JSON.stringify(email)} is already used by users[${first}] (emails are compared case-insensitively)`)
      else seenEmails.set(emailKey, index)
    }

    let sub = typeof email === 'string' && emailKey !== '' ? subjectFor(email) : ''
    if (entry.id !== undefined) {
      if (typeof entry.id !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(entry.id)) {
        problem(at('id'), `expected 1 to 255 printable ASCII characters without spaces, got ${describeValue(entry.id)}`)
      } else {
        sub = entry.id
      }
    }
    // A duplicate email already said it all; its derived subject clashes as a consequence.
    if (sub !== '' && !(entry.id === undefined && seenEmails.get(emailKey) !== index)) {
      const first = seenSubs.get(sub)
      if (first !== undefined) problem(at('id'), `subject ${JSON.stringify(sub)} is already used by users[${first}]`)
      else seenSubs.set(sub, index)
    }

    if (entry.name !== undefined && typeof entry.name !== 'string') {
      problem(at('name'), `expected text, got ${describeValue(entry.name)}`)
    }

    const groups: string[] = []
    if (entry.groups !== undefined && entry.groups !== null) {
      if (!Array.isArray(entry.groups)) {
        problem(at('groups'), `expected a list of group names, got ${describeValue(entry.groups)}`)
      } else {
        for (const [g, group] of (entry.groups as unknown[]).entries()) {
          if (typeof group !== 'string' || group.trim() === '') {
            problem(at('groups'), `item ${g}: expected a non-empty group name, got ${describeValue(group)}`)
          } else if (!groups.includes(group)) {
            groups.push(group)
          }
        }
      }
    }

    const claims: Record<string, unknown> = {}
    if (entry.claims !== undefined && entry.claims !== null) {
      if (!isRecord(entry.claims)) {
        problem(at('claims'), `expected a mapping of claim names to values, got ${describeValue(entry.claims)}`)
      } else {
        for (const [name, value] of Object.entries(entry.claims)) {
          if (RESERVED_CLAIMS.has(name)) {
            problem(at('claims'), `claim ${JSON.stringify(name)} is set by the provider and cannot be overridden`)
          } else if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(name)) {
            problem(at('claims'), `claim name ${JSON.stringify(name)}: expected letters, digits, "_", ".", ":" or "-"`)
          } else if (!isJsonValue(value)) {
            problem(at('claims'), `claim ${JSON.stringify(name)}: expected text, a number, true/false, a list or a mapping`)
          } else {
            claims[name] = value
          }
        }
      }
    }

    const hash = entry.password_hash
    if (typeof hash !== 'string' || !parsePhc(hash)) {
      problem(
        at('password_hash'),
        `required: an argon2id hash "$argon2id$v=19$m=...,t=...,p=...$salt$hash" (make one with "portcullis users hash-password"), got ${describeValue(hash, true)}`,
      )
    }

    let totpSecret: string | undefined
    if (entry.totp_secret !== undefined && entry.totp_secret !== null) {
      const secret = entry.totp_secret
      let bytes = 0
      try {
        bytes = typeof secret === 'string' ? base32Decode(secret).length : 0
      } catch {
        bytes = -1
      }
      if (typeof secret !== 'string' || bytes < 10) {
        problem(at('totp_secret'), `expected a base32 secret of at least 16 characters (80 bits), like the one "portcullis users add --totp" prints${bytes < 0 ? ': only A-Z and 2-7 are base32' : ''}`)
      } else {
        totpSecret = secret.replace(/[\s-]/g, '').replace(/=+$/, '').toUpperCase()
      }
    }

    if (entry.disabled !== undefined && typeof entry.disabled !== 'boolean') {
      problem(at('disabled'), `expected true or false, got ${describeValue(entry.disabled)}`)
    }

    if (problems.length > before) continue
    users.push({
      sub,
      email: (email as string).trim(),
      emailKey,
      name: typeof entry.name === 'string' && entry.name.trim() !== '' ? entry.name : (email as string).trim(),
      groups,
      claims,
      passwordHash: hash as string,
      totpSecret,
      disabled: entry.disabled === true,
    })
  }
  if (problems.length > 0) throw new UsersFileError(file, problems)
  return directory(file, users, declared)
}

/** Top-level `groups:`: `[{id, name}]`; ids and names unique. */
function parseGroups(value: unknown, problem: (path: readonly (string | number)[], message: string) => void): Array<{ id: string; name: string }> {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) {
    problem(['groups'], `expected a list of groups ({id, name}), got ${describeValue(value)}`)
    return []
  }
  const out: Array<{ id: string; name: string }> = []
  const seen = new Set<string>()
  for (const [i, g] of (value as unknown[]).entries()) {
    const id = isRecord(g) ? g['id'] : undefined
    const name = isRecord(g) ? (g['name'] ?? id) : undefined
    if (!isRecord(g) || typeof id !== 'string' || id.trim() === '' || typeof name !== 'string' || name.trim() === '') {
      problem(['groups', i], `expected {id, name} with non-empty text, got ${describeValue(g)}`)
      continue
    }
    for (const k of Object.keys(g)) if (k !== 'id' && k !== 'name') problem(['groups', i, k], 'unknown key (expected id and name)')
    if (seen.has(id) || seen.has(name)) {
      problem(['groups', i], `group ${JSON.stringify(id)} (${JSON.stringify(name)}) repeats an id or name of an earlier group`)
      continue
    }
    seen.add(id)
    seen.add(name)
    out.push({ id, name })
  }
  return out
}

function directory(file: string, users: readonly BuiltinUser[], declared: ReadonlyArray<{ id: string; name: string }> = []): UserDirectory {
  // A user's `groups` item names a declared group by id or name; anything else is a group of its own.
  const groups = new Map<string, { id: string; name: string; memberSubs: string[] }>()
  const byKey = new Map<string, { id: string; name: string; memberSubs: string[] }>()
  for (const d of declared) {
    const g = { ...d, memberSubs: [] as string[] }
    groups.set(d.id, g)
    byKey.set(d.id, g)
    byKey.set(d.name, g)
  }
  for (const u of users) {
    if (u.disabled) continue
    for (const item of u.groups) {
      let g = byKey.get(item)
      if (!g) {
        g = { id: item, name: item, memberSubs: [] }
        groups.set(item, g)
        byKey.set(item, g)
      }
      if (!g.memberSubs.includes(u.sub)) g.memberSubs.push(u.sub)
    }
  }
  const byEmail = new Map(users.map((u) => [u.emailKey, u]))
  const bySub = new Map(users.map((u) => [u.sub, u]))
  const first = users[0] ? parsePhc(users[0].passwordHash) : undefined
  const claimNames = new Set(users.flatMap((u) => Object.keys(u.claims)))
  return {
    file,
    users,
    byEmail: (email) => byEmail.get(canonicalEmail(email)),
    bySub: (sub) => bySub.get(sub),
    typicalHashParams: first ? { m: first.m, t: first.t, p: first.p } : undefined,
    claimNames,
    groups: [...groups.values()],
  }
}

/**
 * A users file that can be read again. A reload that fails keeps the previous users (and throws),
 * so a typo while editing the file does not lock everyone out.
 */
export class UserStore {
  private directory: UserDirectory

  /** @throws {UsersFileError} when the file cannot be loaded the first time */
  constructor(readonly file: string) {
    this.directory = loadUsersFile(file)
  }

  get current(): UserDirectory {
    return this.directory
  }

  /** @throws {UsersFileError} (the previous users stay in effect) */
  reload(): UserDirectory {
    this.directory = loadUsersFile(this.file)
    return this.directory
  }
}

function isEmail(text: string): boolean {
  const trimmed = text.trim()
  return trimmed.length <= 254 && /^[^\s@]+@[^\s@]+$/.test(trimmed)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}

function isJsonValue(value: unknown, depth = 0): boolean {
  if (depth > 16) return false
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
  if (typeof value === 'number') return Number.isFinite(value)
  if (Array.isArray(value)) return value.every((v) => isJsonValue(v, depth + 1))
  if (isRecord(value)) return Object.values(value).every((v) => isJsonValue(v, depth + 1))
  return false
}

function pathText(path: readonly (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('')
}

/** A short description of a bad value; `secret` values are described by type only. */
function describeValue(value: unknown, secret = false): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'an empty value'
  if (Array.isArray(value)) return 'a list'
  if (isRecord(value)) return 'a mapping'
  if (secret) return typeof value === 'string' ? `text of ${value.length} characters that is not one` : `a ${typeof value}`
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return `a ${typeof value}`
}
