/**
 * `portcullis devices ...` (docs/devices.md): list, approve and revoke users' devices, and make
 * enrollment links, straight in the databroker storage the configuration names (a file or
 * PostgreSQL store; memory storage lives inside the running process, where the approvers' page
 * `/.pomerium/devices` does the same).
 */
import { parseArgs as parseNodeArgs } from 'node:util'
import { ConfigSource, formatIssue } from '../config/index.js'
import type { Config } from '../config/types.js'
import { parseDuration } from '../config/duration.js'
import { openRecordStore } from '../databroker/from-config.js'
import type { RecordStore } from '../databroker/index.js'
import { DeviceStore, enrollmentLinkKey, enrollmentPath } from '../session/devices.js'
import type { DeviceCredential } from '../session/devices.js'
import { decodeSecret } from '../shared/secrets.js'
import { createLogger } from '../shared/log.js'
import { environmentConfigures } from './args.js'

export const DEVICES_USAGE = `Usage:
  portcullis devices list --config FILE [--user USER] [--json]
      Every registered device (or USER's, by user id or email): id, user, type, approval.
  portcullis devices approve --config FILE --id=ID
  portcullis devices revoke --config FILE --id=ID
      Approve a device, or take its approval back (rules with approved: true, and device types
      with approval_required, stop admitting it at once).
  portcullis devices enroll --config FILE --user USER --type TYPE --url https://ROUTE-HOST [--lifetime 168h]
      Print an enrollment link: it registers one device of TYPE for USER (user id or email),
      approved from the start; single use, expiring (default one week).

Credential ids may start with "-": give them as --id=ID (or after --).

The storage is the one the config names (databroker_storage_type file or postgres).`

export interface DevicesIo {
  readonly out: (text: string) => void
  readonly err: (text: string) => void
  /** Opens the record store of a config (tests pass their own). */
  readonly openStore?: (config: Config) => Promise<RecordStore>
}

const processIo: DevicesIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) }

export async function devicesCommand(argv: readonly string[], io: DevicesIo = processIo): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h' || rest.includes('--help') || rest.includes('-h')) {
    const print = sub === undefined ? io.err : io.out
    print(`${DEVICES_USAGE}\n`)
    return sub === undefined ? 2 : 0
  }
  if (!['list', 'approve', 'revoke', 'enroll'].includes(sub)) {
    io.err(`portcullis devices: unknown subcommand ${JSON.stringify(sub)} (expected list, approve, revoke or enroll)\n${DEVICES_USAGE}\n`)
    return 2
  }
  let parsed
  try {
    parsed = parseNodeArgs({
      args: rest,
      options: {
        config: { type: 'string' },
        user: { type: 'string' },
        type: { type: 'string' },
        url: { type: 'string' },
        id: { type: 'string' },
        lifetime: { type: 'string', default: '168h' },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    })
  } catch (err) {
    io.err(`portcullis devices: ${(err as Error).message}\n${DEVICES_USAGE}\n`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.config === undefined && !environmentConfigures(process.env)) {
    io.err(`portcullis devices: --config FILE is required: the configuration whose storage holds the devices\n`)
    return 2
  }
  const { config, issues } = new ConfigSource({ file: values.config, env: process.env, logger: createLogger('disabled') }).load()
  if (!config) {
    for (const i of issues) if (i.severity === 'error') io.err(`${formatIssue(i)}\n`)
    return 1
  }
  if (!io.openStore && config.storage.type === 'memory') {
    io.err('portcullis devices: this config keeps its databroker in memory, inside the running process; approve devices and make enrollment links on the approvers\' page /.pomerium/devices (device_approvers), or use file or postgres storage\n')
    return 1
  }
  const store = io.openStore ? await io.openStore(config) : (await openRecordStore(config, createLogger('disabled'))).store
  try {
    const devices = new DeviceStore(store)
    switch (sub) {
      case 'list':
        return await list(devices, values.user, values.json, io)
      case 'approve':
      case 'revoke': {
        const ids = [...(values.id !== undefined ? [values.id] : []), ...positionals]
        const id = ids[0]
        if (id === undefined || ids.length !== 1) {
          io.err(`portcullis devices: ${sub} takes one device id (--id=ID)\n`)
          return 2
        }
        const updated = await devices.setApproved(id, sub === 'approve', 'portcullis devices')
        if (!updated) {
          io.err(`portcullis devices: no device ${JSON.stringify(id)}\n`)
          return 1
        }
        io.out(`${sub === 'approve' ? 'approved' : 'revoked'} ${id} (${updated.userName ?? updated.userId}, ${updated.typeId})\n`)
        return 0
      }
      default:
        return await enroll(config, devices, values, io)
    }
  } finally {
    await store.close()
  }
}

async function list(devices: DeviceStore, user: string | undefined, asJson: boolean, io: DevicesIo): Promise<number> {
  const all = await devices.listAll()
  const wanted = user === undefined ? all : all.filter((d) => d.userId === user || (d.userName ?? '').toLowerCase() === user.toLowerCase())
  if (asJson) {
    io.out(`${JSON.stringify(wanted.map(publicView), null, 2)}\n`)
    return 0
  }
  if (wanted.length === 0) {
    io.out('no devices\n')
    return 0
  }
  for (const d of wanted) {
    io.out(
      `${d.id}  ${d.userName ?? d.userId}  ${d.typeId}  ${d.approved ? `approved${d.approvedBy !== undefined ? ` by ${d.approvedBy}` : ''}` : 'not approved'}${d.suspendedAt !== undefined ? '  SUSPENDED (counter went backwards)' : ''}  registered ${new Date(d.createdAt).toISOString()}\n`,
    )
  }
  return 0
}

/** What the command shows of a device: never the public key, which nobody needs to read. */
function publicView(d: DeviceCredential): Record<string, unknown> {
  return {
    id: d.id,
    user_id: d.userId,
    user: d.userName ?? d.userId,
    type: d.typeId,
    approved: d.approved,
    approved_by: d.approvedBy,
    suspended_at: d.suspendedAt === undefined ? undefined : new Date(d.suspendedAt).toISOString(),
    created_at: new Date(d.createdAt).toISOString(),
    last_used_at: d.lastUsedAt === undefined ? undefined : new Date(d.lastUsedAt).toISOString(),
    aaguid: d.aaguid,
    attestation_format: d.format,
  }
}

async function enroll(config: Config, devices: DeviceStore, values: { user?: string | undefined; type?: string | undefined; url?: string | undefined; lifetime?: string | undefined }, io: DevicesIo): Promise<number> {
  const { user, type, url } = values
  if (user === undefined || type === undefined || url === undefined) {
    io.err('portcullis devices: enroll needs --user, --type and --url (a route host the person can open)\n')
    return 2
  }
  if (!config.deviceTypes.some((t) => t.id === type)) {
    io.err(`portcullis devices: unknown device type ${JSON.stringify(type)} (expected ${config.deviceTypes.map((t) => t.id).join(', ')})\n`)
    return 2
  }
  let origin: string
  try {
    const parsed = new URL(url)
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new Error('not http(s)')
    origin = parsed.origin
  } catch {
    io.err(`portcullis devices: --url ${JSON.stringify(url)} is not an http(s) URL of a route host\n`)
    return 2
  }
  const lifetimeMs = parseDuration(values.lifetime ?? '168h')
  if (lifetimeMs === undefined || lifetimeMs <= 0) {
    io.err(`portcullis devices: --lifetime ${JSON.stringify(values.lifetime)} is not a duration (e.g. 24h)\n`)
    return 2
  }
  const secret = decodeSecret(config.sharedSecret)
  if (!secret) {
    io.err('portcullis devices: the config has no shared_secret, so no link could be checked by the server\n')
    return 1
  }
  const enrollment = await devices.createEnrollment({ typeId: type, userId: user, createdBy: 'portcullis devices', lifetimeMs })
  io.out(`${origin}${enrollmentPath(enrollmentLinkKey(secret), enrollment.id)}\n`)
  io.err(`valid until ${new Date(enrollment.expiresAt).toISOString()}, once, for ${user}\n`)
  return 0
}
