/**
 * `portcullis users ...`: manage the built-in identity provider's users file.
 *
 * - `hash-password` reads a password (hidden when typed at a terminal, else the whole of stdin
 *   minus one trailing newline) and prints its argon2id PHC string.
 * - `add` appends a user to the file through the YAML Document API, so the file's comments and
 *   layout stay, refuses an email already there, and checks that the result still loads.
 *
 * Streams are parameters so tests drive the command in-process.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Readable, Writable } from 'node:stream'

import { isMap, isSeq, parseDocument } from 'yaml'

import { DEFAULT_ARGON2_PARAMS, hashPassword, MAX_PASSWORD_LENGTH } from '../builtin-idp/password.js'
import type { Argon2Params } from '../builtin-idp/password.js'
import { generateTotpSecret, totpUri } from '../builtin-idp/totp.js'
import { canonicalEmail, parseUsers, UsersFileError } from '../builtin-idp/users.js'
import { CodedError } from '../shared/errors.js'

export const USERS_USAGE = `Usage:
  portcullis users hash-password
      Read a password (hidden at a terminal, or piped on stdin) and print its argon2id hash
      for the password_hash of a user in the built-in identity provider's users file.

  portcullis users add --file FILE --email EMAIL [--name NAME] [--group GROUP]... [--id ID] [--totp]
      Add a user to FILE (created when missing), keeping the file's comments. Reads the password
      like hash-password. Refuses an email that is already in the file (case-insensitively).
      --group        repeat for each group
      --id           the user's subject (sub); default derived from the email
      --totp         also require a one-time code: prints the secret and an otpauth:// URI to add
                     to an authenticator app
      --issuer NAME  the name the authenticator app shows with --totp (default "Portcullis")

Piped passwords: printf '%s' 'secret' | portcullis users hash-password`

export interface UsersIo {
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown }
  stdout: Writable
  stderr: Writable
  /** argon2id cost; tests pass cheap ones. Default: OWASP's m=19456, t=2, p=1. */
  hashParams?: Argon2Params
}

const MIN_PASSWORD_LENGTH = 8

/** Runs `portcullis users ARGV...`; resolves to the exit code. */
export async function users(argv: readonly string[], io: UsersIo = processIo()): Promise<number> {
  const [sub, ...rest] = argv
  const err = (message: string): number => {
    io.stderr.write(`portcullis users: ${message}\n`)
    return 2
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    ;(sub === undefined ? io.stderr : io.stdout).write(`${USERS_USAGE}\n`)
    return sub === undefined ? 2 : 0
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${USERS_USAGE}\n`)
    return 0
  }
  try {
    switch (sub) {
      case 'hash-password': {
        if (rest.length > 0) return err(`hash-password takes no arguments, got ${JSON.stringify(rest[0])}`)
        const password = await readNewPassword(io)
        io.stdout.write(`${await hashPassword(password, io.hashParams ?? DEFAULT_ARGON2_PARAMS)}\n`)
        return 0
      }
      case 'add':
        return await add(rest, io)
      default:
        return err(`unknown subcommand ${JSON.stringify(sub)} (expected hash-password or add)\n${USERS_USAGE}`)
    }
  } catch (e) {
    if (e instanceof CliError) {
      io.stderr.write(`portcullis users: ${e.message}\n`)
      return e.exitCode
    }
    throw e
  }
}

class CliError extends CodedError {
  readonly code = 'ERR_USAGE'

  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message)
  }
}

interface AddArgs {
  file: string
  email: string
  name: string | undefined
  id: string | undefined
  groups: string[]
  totp: boolean
  issuer: string
}

function parseAddArgs(argv: readonly string[]): AddArgs {
  let file: string | undefined
  let email: string | undefined
  let name: string | undefined
  let id: string | undefined
  let issuer = 'Portcullis'
  let totp = false
  const groups: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    const m = /^--([a-z]+)(?:=(.*))?$/s.exec(arg)
    if (!m) throw new CliError(`unexpected argument ${JSON.stringify(arg)}`, 2)
    const flag = m[1] as string
    if (flag === 'totp') {
      if (m[2] !== undefined) throw new CliError('--totp takes no value', 2)
      totp = true
      continue
    }
    const value = m[2] ?? argv[++i]
    if (value === undefined || value === '') throw new CliError(`--${flag} needs a value`, 2)
    switch (flag) {
      case 'file':
        file = value
        break
      case 'email':
        email = value
        break
      case 'name':
        name = value
        break
      case 'id':
        id = value
        break
      case 'group':
        if (!groups.includes(value)) groups.push(value)
        break
      case 'issuer':
        issuer = value
        break
      default:
        throw new CliError(`unknown option --${flag}`, 2)
    }
  }
  if (file === undefined) throw new CliError('add needs --file FILE', 2)
  if (email === undefined) throw new CliError('add needs --email EMAIL', 2)
  return { file, email, name, id, groups, totp, issuer }
}

async function add(argv: readonly string[], io: UsersIo): Promise<number> {
  const args = parseAddArgs(argv)
  const exists = existsSync(args.file)
  const text = exists ? readFileSync(args.file, 'utf8') : ''
  if (exists && text.trim() !== '') {
    // The file must load before it is edited: appending to a broken file hides the breakage.
    let current
    try {
      current = parseUsers(text, args.file)
    } catch (e) {
      if (e instanceof UsersFileError) throw new CliError(`${e.message}\nfix the file first`)
      throw e
    }
    if (current.byEmail(args.email)) throw new CliError(`${args.file} already has a user with email ${canonicalEmail(args.email)}`)
  }

  const doc = parseDocument(text.trim() === '' ? 'users: []\n' : text)
  if (!isMap(doc.contents)) throw new CliError(`${args.file}: expected a mapping with a top-level "users:" list`)
  const password = await readNewPassword(io)
  const entry: Record<string, unknown> = { email: args.email.trim() }
  if (args.id !== undefined) entry.id = args.id
  if (args.name !== undefined) entry.name = args.name
  if (args.groups.length > 0) entry.groups = args.groups
  entry.password_hash = await hashPassword(password, io.hashParams ?? DEFAULT_ARGON2_PARAMS)
  const secret = args.totp ? generateTotpSecret() : undefined
  if (secret !== undefined) entry.totp_secret = secret

  const list: unknown = doc.get('users', true)
  if (isSeq(list)) {
    // A flow list (`users: []`) would put the whole entry on one line; make it a block list.
    list.flow = false
    list.add(doc.createNode(entry))
  } else {
    doc.set('users', doc.createNode([entry]))
  }
  // No folding: long values already in the file (hashes) stay on their lines.
  const updated = doc.toString({ lineWidth: 0 })
  let loaded
  try {
    loaded = parseUsers(updated, args.file)
  } catch (e) {
    if (e instanceof UsersFileError) throw new CliError(`the new entry would not load: ${e.message}`)
    throw e
  }
  writeAtomically(args.file, updated)
  const user = loaded.byEmail(args.email)
  io.stderr.write(`added ${args.email.trim()} (sub ${user?.sub ?? '?'}) to ${args.file}\n`)
  if (secret !== undefined) {
    io.stdout.write(`TOTP secret: ${secret}\n${totpUri({ secret, accountName: args.email.trim(), issuer: args.issuer })}\n`)
    io.stderr.write('add the otpauth:// URI (or the secret) to an authenticator app; it is not shown again\n')
  }
  return 0
}

/** Writes through a temporary file and a rename, so a reader never sees half a file. */
function writeAtomically(file: string, text: string): void {
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  const mode = existsSync(file) ? statSync(file).mode & 0o777 : 0o600
  writeFileSync(temp, text, { mode, flag: 'wx' })
  chmodSync(temp, mode)
  renameSync(temp, file)
}

/** A password for a new hash: asked twice at a terminal, read once from a pipe. */
async function readNewPassword(io: UsersIo): Promise<string> {
  let password: string
  if (io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function') {
    password = await readHidden(io, 'Password: ')
    const again = await readHidden(io, 'Repeat password: ')
    if (again !== password) throw new CliError('the passwords do not match')
  } else {
    const text = await readAll(io.stdin)
    password = text.replace(/\r?\n$/, '')
    if (/[\r\n]/.test(password)) throw new CliError('the piped password has a line break inside; pipe exactly one line')
  }
  if (password.length === 0) throw new CliError('empty password')
  if (password.length < MIN_PASSWORD_LENGTH) throw new CliError(`passwords need at least ${MIN_PASSWORD_LENGTH} characters`)
  if (password.length > MAX_PASSWORD_LENGTH) throw new CliError(`passwords are at most ${MAX_PASSWORD_LENGTH} characters`)
  return password
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))
  return Buffer.concat(chunks).toString('utf8')
}

/** Reads one line from a terminal in raw mode, echoing nothing; Ctrl-C or Ctrl-D cancels. */
function readHidden(io: UsersIo, prompt: string): Promise<string> {
  const { stdin } = io
  io.stderr.write(prompt)
  stdin.setRawMode?.(true)
  stdin.resume()
  stdin.setEncoding('utf8')
  return new Promise((resolve, reject) => {
    let text = ''
    const done = (error?: CliError): void => {
      stdin.off('data', onData)
      stdin.setRawMode?.(false)
      stdin.pause()
      io.stderr.write('\n')
      if (error) reject(error)
      else resolve(text)
    }
    const onData = (chunk: string): void => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') return done()
        if (char === '\u0003') return done(new CliError('cancelled', 130))
        if (char === '\u0004') {
          if (text === '') return done(new CliError('cancelled', 130))
          continue
        }
        if (char === '\u007f' || char === '\b') text = [...text].slice(0, -1).join('')
        else if (char >= ' ') text += char
      }
    }
    stdin.on('data', onData)
  })
}

function processIo(): UsersIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }
}
