/**
 * Row-level operations on the snapshots table. Every function takes the Database handed out by
 * MetaStore.withTransaction / read, so callers compose them inside one transaction. They enforce
 * the metastore rules of containerd's snapshots/storage (bolt.go) and raise its error kinds.
 *
 * Namespaces: `ns` is the containerd namespace of the request. `undefined` means the request came
 * without one — containerd's garbage collector and Cleanup do that — and lookups then span every
 * namespace (see `resolve`).
 */
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js'
import type { Database } from './sqlite.js'

export type Kind = 'active' | 'view' | 'committed'

export interface SnapshotRecord {
  id: number
  namespace: string
  key: string
  kind: Kind
  parentId: number | null
  /** Key of the parent ('' for none). */
  parent: string
  labels: Record<string, string>
  createdUs: number
  updatedUs: number
  size: number
  inodes: number
}

interface Row {
  id: number
  namespace: string
  key: string
  kind: Kind
  parent_id: number | null
  parent: string | null
  labels: string
  created_us: number
  updated_us: number
  size: number
  inodes: number
}

const SELECT = `SELECT s.id, s.namespace, s.key, s.kind, s.parent_id, p.key AS parent, s.labels,
  s.created_us, s.updated_us, s.size, s.inodes FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`

function toRecord(r: Row): SnapshotRecord {
  return {
    id: r.id,
    namespace: r.namespace,
    key: r.key,
    kind: r.kind,
    parentId: r.parent_id,
    parent: r.parent ?? '',
    labels: JSON.parse(r.labels) as Record<string, string>,
    createdUs: r.created_us,
    updatedUs: r.updated_us,
    size: r.size,
    inodes: r.inodes,
  }
}

/** Wall-clock microseconds; performance.now keeps sub-millisecond order between calls. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000)
}

export function findByKey(db: Database, ns: string | undefined, key: string): SnapshotRecord[] {
  const rows = ns === undefined
    ? db.prepare<Row>(`${SELECT} WHERE s.key = ? ORDER BY s.id`).all(key)
    : db.prepare<Row>(`${SELECT} WHERE s.namespace = ? AND s.key = ?`).all(ns, key)
  return rows.map(toRecord)
}

/** The one snapshot called `key` in scope; NotFound if none, FailedPrecondition if ambiguous. */
export function resolve(db: Database, ns: string | undefined, key: string): SnapshotRecord {
  const found = findByKey(db, ns, key)
  if (found.length === 0) throw new NotFoundError(`snapshot ${JSON.stringify(key)} does not exist${ns ? ` in namespace ${JSON.stringify(ns)}` : ''}`)
  if (found.length > 1) {
    throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} exists in namespaces ${found.map((r) => JSON.stringify(r.namespace)).join(', ')}: send the containerd-namespace header`)
  }
  return found[0] as SnapshotRecord
}

export function getById(db: Database, id: number): SnapshotRecord | undefined {
  const r = db.prepare<Row>(`${SELECT} WHERE s.id = ?`).get(id)
  return r ? toRecord(r) : undefined
}

export function listRecords(db: Database, ns: string | undefined): SnapshotRecord[] {
  const rows = ns === undefined
    ? db.prepare<Row>(`${SELECT} ORDER BY s.id`).all()
    : db.prepare<Row>(`${SELECT} WHERE s.namespace = ? ORDER BY s.id`).all(ns)
  return rows.map(toRecord)
}

/** Parents of `rec`, nearest first (the order overlay wants for lowerdir). */
export function parentChain(db: Database, rec: SnapshotRecord): SnapshotRecord[] {
  const out: SnapshotRecord[] = []
  let next = rec.parentId
  const seen = new Set<number>([rec.id])
  while (next !== null) {
    if (seen.has(next)) throw new Error(`metadata store: parent cycle at snapshot id ${next}`)
    seen.add(next)
    const p = getById(db, next)
    if (!p) throw new NotFoundError(`parent id ${next} of snapshot ${JSON.stringify(rec.key)} is missing`)
    out.push(p)
    next = p.parentId
  }
  return out
}

export interface NewSnapshot {
  ns: string
  key: string
  kind: 'active' | 'view'
  parent: string
  labels: Record<string, string>
}

/** Insert an active or view snapshot; returns the record (with its new id). */
export function insertSnapshot(db: Database, s: NewSnapshot): SnapshotRecord {
  if (s.key === '') throw new InvalidArgumentError('snapshot key must not be empty')
  let parentId: number | null = null
  if (s.parent !== '') {
    const found = findByKey(db, s.ns, s.parent)
    const p = found[0]
    if (!p) throw new NotFoundError(`missing parent ${JSON.stringify(s.parent)}`)
    if (p.kind !== 'committed') throw new InvalidArgumentError(`parent ${JSON.stringify(s.parent)} is not committed snapshot`)
    parentId = p.id
  }
  if (findByKey(db, s.ns, s.key).length > 0) throw new AlreadyExistsError(`snapshot ${JSON.stringify(s.key)} already exists`)
  const t = nowUs()
  const r = db.prepare(`INSERT INTO snapshots (namespace, key, kind, parent_id, labels, created_us, updated_us)
    VALUES (?, ?, ?, ?, ?, ?, ?)`).run(s.ns, s.key, s.kind, parentId, JSON.stringify(s.labels), t, t)
  const rec = getById(db, Number(r.lastInsertRowid))
  if (!rec) throw new Error('metadata store: inserted row vanished')
  return rec
}

export interface Usage {
  size: number
  inodes: number
}

/**
 * Commit active snapshot `key` as `name`: same id (so the same directory), kind committed, labels
 * replaced by `labels` (containerd does not inherit them), created = updated = now.
 */
export function commitSnapshot(db: Database, ns: string | undefined, key: string, name: string, usage: Usage, labels: Record<string, string>): SnapshotRecord {
  if (name === '') throw new InvalidArgumentError('committed snapshot name must not be empty')
  const rec = resolve(db, ns, key)
  if (findByKey(db, rec.namespace, name).length > 0) throw new AlreadyExistsError(`committed snapshot ${JSON.stringify(name)} already exists`)
  if (rec.kind !== 'active') throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is not active`)
  const t = nowUs()
  db.prepare(`UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, created_us = ?, updated_us = ?, size = ?, inodes = ?
    WHERE id = ?`).run(name, JSON.stringify(labels), t, t, usage.size, usage.inodes, rec.id)
  return getById(db, rec.id) as SnapshotRecord
}

export function hasChildren(db: Database, id: number): boolean {
  return db.prepare<{ n: number }>('SELECT 1 AS n FROM snapshots WHERE parent_id = ? LIMIT 1').get(id) !== undefined
}

/** Delete one record; FailedPrecondition while it has children. */
export function deleteSnapshot(db: Database, rec: SnapshotRecord): void {
  if (hasChildren(db, rec.id)) throw new FailedPreconditionError(`cannot remove snapshot ${JSON.stringify(rec.key)} with child`)
  db.prepare('DELETE FROM snapshots WHERE id = ?').run(rec.id)
}

export function writeLabels(db: Database, id: number, labels: Record<string, string>): SnapshotRecord {
  db.prepare('UPDATE snapshots SET labels = ?, updated_us = ? WHERE id = ?').run(JSON.stringify(labels), nowUs(), id)
  return getById(db, id) as SnapshotRecord
}

export function allIds(db: Database): Set<number> {
  return new Set(db.prepare<{ id: number }>('SELECT id FROM snapshots').all().map((r) => r.id))
}
