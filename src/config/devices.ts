/**
 * Device types (docs/devices.md): what a WebAuthn credential must be to count as a device of a
 * type. Pomerium has two built in, `any` (every authenticator: security keys and platform
 * authenticators) and `enclave_only` (platform authenticators only); Portcullis adds configured
 * types (`device_types`) that pin attestation formats, authenticator models (AAGUIDs), user
 * verification, and whether a device needs an approver's approval before it counts.
 *
 * Pure data, checked at load with key paths; the WebAuthn pages (src/authenticate/webauthn.ts)
 * and the authorizer read it.
 */
import { X509Certificate } from 'node:crypto'
import { readReferencedFile } from './files.js'
import type { FileContext } from './files.js'
import type { IssueCollector } from './issues.js'

export type UserVerification = 'required' | 'preferred' | 'discouraged'
export type AuthenticatorAttachment = 'platform' | 'cross-platform'

export interface DeviceType {
  readonly id: string
  /** Shown on pages. */
  readonly name: string
  /** Only authenticators of this attachment are offered and accepted; undefined = both. */
  readonly attachment: AuthenticatorAttachment | undefined
  readonly userVerification: UserVerification
  /**
   * Attestation statement formats accepted at registration (`packed`, `tpm`, `apple`,
   * `android-key`, `android-safetynet`, `fido-u2f`, `none`); undefined = any. A list without
   * `none` asks the browser for direct attestation.
   */
  readonly attestationFormats: readonly string[] | undefined
  /** Authenticator models accepted (AAGUIDs, lower case with dashes); undefined = any. */
  readonly aaguids: readonly string[] | undefined
  /** New devices of this type count only once an approver approves them (or came from an enrollment link). */
  readonly approvalRequired: boolean
  /**
   * PEM certificates an attestation chain must end in (`attestation_roots`: files), for the
   * formats `@simplewebauthn/server` has no maker's roots for (packed, tpm, fido-u2f).
   */
  readonly attestationRoots?: readonly string[]
}

/** Formats whose statements the library checks against the makers' roots it carries (Apple, Google). */
export const FORMATS_WITH_BUILTIN_ROOTS: readonly string[] = ['apple', 'android-key', 'android-safetynet']

/**
 * Whether registrations of this type must prove what they are with an attestation statement:
 * the type names models or formats (without `none`).
 */
export function requiresAttestation(type: DeviceType): boolean {
  return type.aaguids !== undefined || (type.attestationFormats !== undefined && !type.attestationFormats.includes('none'))
}

const ATTESTATION_FORMATS = ['packed', 'tpm', 'apple', 'android-key', 'android-safetynet', 'fido-u2f', 'none']
const ID = /^[a-z0-9][a-z0-9_-]{0,63}$/
const AAGUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const KEYS = new Set(['id', 'name', 'authenticator_attachment', 'user_verification', 'attestation_formats', 'aaguids', 'attestation_roots', 'approval_required'])

/** Pomerium's built-in types (Pomerium docs: Device Identity). */
export const BUILTIN_DEVICE_TYPES: readonly DeviceType[] = Object.freeze([
  Object.freeze({ id: 'any', name: 'Any device', attachment: undefined, userVerification: 'preferred', attestationFormats: undefined, aaguids: undefined, approvalRequired: false }),
  Object.freeze({
    id: 'enclave_only',
    name: 'Platform authenticator (TPM, Secure Enclave, Android keystore)',
    attachment: 'platform',
    userVerification: 'required',
    attestationFormats: undefined,
    aaguids: undefined,
    approvalRequired: false,
  }),
] satisfies DeviceType[])


function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * `device_types`: the built-in types plus the configured ones; a configured type with a built-in
 * id (`any`, `enclave_only`) replaces it, so an organisation can require approval for `any`.
 */
export function checkDeviceTypes(raw: Readonly<Record<string, unknown>>, issues: IssueCollector, files: FileContext): DeviceType[] {
  const types = new Map(BUILTIN_DEVICE_TYPES.map((t) => [t.id, t]))
  const list = raw['device_types']
  if (list === undefined || list === null) return [...types.values()]
  if (!Array.isArray(list)) {
    issues.error('device_types', list, 'expected a list of device types ({id, name, authenticator_attachment, user_verification, attestation_formats, aaguids, approval_required})')
    return [...types.values()]
  }
  const seen = new Set<string>()
  list.forEach((entry: unknown, i) => {
    const at = `device_types[${i}]`
    if (!isRecord(entry)) {
      issues.error(at, entry, 'expected a device type object with at least an id')
      return
    }
    let ok = true
    const fail = (key: string, message: string): void => {
      issues.error(`${at}.${key}`, entry[key], message)
      ok = false
    }
    for (const key of Object.keys(entry)) if (!KEYS.has(key)) fail(key, `unknown key (expected ${[...KEYS].join(', ')})`)
    const id = entry['id']
    if (typeof id !== 'string' || !ID.test(id)) fail('id', 'expected a device type id: lower-case letters, digits, _ and -, at most 64')
    else if (seen.has(id)) fail('id', `device type "${id}" is defined twice`)
    const name = entry['name'] ?? id
    if (typeof name !== 'string' || name === '') fail('name', 'expected a non-empty string')
    const attachment = entry['authenticator_attachment']
    if (attachment !== undefined && attachment !== 'platform' && attachment !== 'cross-platform') fail('authenticator_attachment', 'expected platform or cross-platform')
    const uv = entry['user_verification'] ?? 'preferred'
    if (uv !== 'required' && uv !== 'preferred' && uv !== 'discouraged') fail('user_verification', 'expected required, preferred or discouraged')
    const formats = stringList(entry['attestation_formats'])
    if (formats === null) fail('attestation_formats', `expected a list of attestation formats (${ATTESTATION_FORMATS.join(', ')})`)
    else formats?.forEach((f, j) => {
      if (!ATTESTATION_FORMATS.includes(f)) fail(`attestation_formats[${j}]`, `unknown attestation format (expected one of ${ATTESTATION_FORMATS.join(', ')})`)
    })
    const aaguids = stringList(entry['aaguids'])
    if (aaguids === null) fail('aaguids', 'expected a list of AAGUIDs (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)')
    else aaguids?.forEach((a, j) => {
      if (!AAGUID.test(a.toLowerCase())) fail(`aaguids[${j}]`, 'expected an AAGUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)')
    })
    const approval = entry['approval_required'] ?? false
    if (typeof approval !== 'boolean') fail('approval_required', 'expected true or false')
    const rootFiles = stringList(entry['attestation_roots'])
    const roots: string[] = []
    if (rootFiles === null) fail('attestation_roots', 'expected a list of PEM certificate files')
    else rootFiles?.forEach((file, j) => {
      const read = readReferencedFile(files, file)
      if ('error' in read) return fail(`attestation_roots[${j}]`, read.error)
      const pems = read.text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
      if (pems.length === 0) return fail(`attestation_roots[${j}]`, `no PEM certificate in ${read.path}`)
      for (const pem of pems) {
        try {
          new X509Certificate(pem)
          roots.push(pem)
        } catch {
          fail(`attestation_roots[${j}]`, `a certificate in ${read.path} cannot be read`)
        }
      }
    })
    // An AAGUID or a format is only as good as the chain behind the statement: without the maker's
    // root, a software authenticator can claim any model with a certificate it made itself.
    const named = formats ?? undefined
    const onlyBuiltinRoots = named !== undefined && named.every((f) => FORMATS_WITH_BUILTIN_ROOTS.includes(f))
    const needsRoots = (aaguids ?? undefined) !== undefined ? !onlyBuiltinRoots : (named ?? []).some((f) => f !== 'none' && !FORMATS_WITH_BUILTIN_ROOTS.includes(f)) && !named?.includes('none')
    if (ok && needsRoots && roots.length === 0) {
      fail(
        'attestation_roots',
        `required when a type names aaguids or the formats packed, tpm or fido-u2f: without the makers' root certificates an attestation statement proves nothing (or list only ${FORMATS_WITH_BUILTIN_ROOTS.join(', ')}, whose roots Portcullis carries)`,
      )
    }
    if (typeof id === 'string') seen.add(id)
    if (!ok || typeof id !== 'string') return
    types.set(id, {
      id,
      name: name as string,
      attachment: attachment as AuthenticatorAttachment | undefined,
      userVerification: uv as UserVerification,
      attestationFormats: formats ?? undefined,
      aaguids: aaguids?.map((a) => a.toLowerCase()),
      approvalRequired: approval as boolean,
      ...(roots.length > 0 ? { attestationRoots: roots } : {}),
    })
  })
  return [...types.values()]
}

/** The type with this id, if the configuration has it. */
export function deviceTypeById(types: readonly DeviceType[], id: string): DeviceType | undefined {
  return types.find((t) => t.id === id)
}



/** undefined when absent, null when not a list of strings. */
function stringList(v: unknown): string[] | undefined | null {
  if (v === undefined || v === null) return undefined
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) return null
  return v
}
