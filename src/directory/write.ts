/**
 * Writes a complete read of the directory into the databroker: records that changed are put,
 * records of the same source that the read no longer has are deleted, the rest is left alone (so
 * a sync that changes nothing writes nothing, and the authorize copies see only real changes).
 * Records of another source (SCIM pushes) are never touched.
 */
import type { RecordInput, RecordStore } from '../databroker/index.js'
import { DIRECTORY_GROUP_TYPE, DIRECTORY_USER_TYPE } from '../session/directory.js'
import type { DirectoryGroupRecord, DirectorySource, DirectoryUserRecord } from '../session/directory.js'
import type { DirectoryData } from './provider.js'

export interface WriteResult {
  readonly put: number
  readonly deleted: number
}

/** Records per `put` call: large directories are written in batches. */
const BATCH = 500

export async function writeDirectory(store: RecordStore, source: DirectorySource, data: DirectoryData): Promise<WriteResult> {
  const users: DirectoryUserRecord[] = data.users.map((u) => ({
    id: u.id,
    source,
    active: true,
    ...(u.email ? { email: u.email, emailVerified: u.emailVerified === true } : {}),
    ...(u.displayName ? { displayName: u.displayName } : {}),
  }))
  const groups: DirectoryGroupRecord[] = data.groups.map((g) => ({
    id: g.id,
    source,
    name: g.name,
    memberIds: [...new Set(g.memberIds)].sort(),
    ...(g.nestedGroupIds && g.nestedGroupIds.length > 0 ? { nestedGroupIds: [...new Set(g.nestedGroupIds)].sort() } : {}),
    ...(g.email ? { email: g.email } : {}),
  }))
  const a = await replace(store, DIRECTORY_USER_TYPE, source, users)
  const b = await replace(store, DIRECTORY_GROUP_TYPE, source, groups)
  return { put: a.put + b.put, deleted: a.deleted + b.deleted }
}

async function replace(store: RecordStore, type: string, source: DirectorySource, records: ReadonlyArray<{ id: string }>): Promise<WriteResult> {
  const existing = new Map<string, string>()
  const others = new Set<string>()
  for (const r of (await store.query({ type })).records) {
    const data = r.data as { source?: unknown }
    if (data?.source === source) existing.set(r.id, JSON.stringify(r.data))
    else others.add(r.id)
  }
  const puts: RecordInput[] = []
  const seen = new Set<string>()
  for (const r of records) {
    if (seen.has(r.id) || others.has(r.id)) continue
    seen.add(r.id)
    if (existing.get(r.id) !== JSON.stringify(r)) puts.push({ type, id: r.id, data: r })
  }
  for (let i = 0; i < puts.length; i += BATCH) await store.put(puts.slice(i, i + BATCH))
  let deleted = 0
  for (const id of existing.keys()) {
    if (!seen.has(id)) {
      await store.delete(type, id)
      deleted++
    }
  }
  return { put: puts.length, deleted }
}
