import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MetaStore } from '../../src/store/metastore.js'
import { commitSnapshot, deleteSnapshot, findByKey, insertSnapshot, listRecords, parentChain, resolve } from '../../src/store/snapshot-records.js'

async function open(t: { teardown(fn: () => unknown): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-store-'))
  const path = join(dir, 'metadata.db')
  const stores: MetaStore[] = []
  t.teardown(async () => {
    for (const s of stores) s.close()
    await rm(dir, { recursive: true, force: true })
  })
  const openOne = () => {
    const s = MetaStore.open(path)
    stores.push(s)
    return s
  }
  return { path, openOne }
}

t.test('pragmas: WAL + synchronous FULL + foreign keys', async (t) => {
  const { openOne } = await open(t)
  const s = openOne()
  t.equal(s.database.pragma('journal_mode', { simple: true }), 'wal')
  t.equal(s.database.pragma('synchronous', { simple: true }), 2, 'FULL')
  t.equal(s.database.pragma('foreign_keys', { simple: true }), 1)
})

t.test('a throwing transaction leaves nothing behind', async (t) => {
  const { openOne } = await open(t)
  const s = openOne()
  t.throws(() => s.withTransaction((db) => {
    insertSnapshot(db, { ns: 'n', key: 'a', kind: 'active', parent: '', labels: {} })
    throw new Error('boom')
  }), /boom/)
  t.same(s.read((db) => listRecords(db, undefined)), [])
})

t.test('ids are never reused, and records survive reopening', async (t) => {
  const { openOne } = await open(t)
  const s = openOne()
  const a = s.withTransaction((db) => insertSnapshot(db, { ns: 'n', key: 'a', kind: 'active', parent: '', labels: { x: 'y' } }))
  s.withTransaction((db) => deleteSnapshot(db, a))
  const b = s.withTransaction((db) => insertSnapshot(db, { ns: 'n', key: 'b', kind: 'active', parent: '', labels: {} }))
  t.ok(b.id > a.id, 'AUTOINCREMENT: a removed id is not handed out again')
  s.close()
  const s2 = openOne()
  t.same(s2.read((db) => findByKey(db, 'n', 'b')).map((r) => r.id), [b.id])
})

t.test('commit keeps the id, replaces labels, parent chain nearest first', async (t) => {
  const { openOne } = await open(t)
  const s = openOne()
  const base = s.withTransaction((db) => {
    insertSnapshot(db, { ns: 'n', key: 'a', kind: 'active', parent: '', labels: { old: '1' } })
    return commitSnapshot(db, 'n', 'a', 'A', { size: 10, inodes: 2 }, { new: '2' })
  })
  t.equal(base.kind, 'committed')
  t.same(base.labels, { new: '2' })
  t.equal(base.size, 10)
  const mid = s.withTransaction((db) => {
    insertSnapshot(db, { ns: 'n', key: 'b', kind: 'active', parent: 'A', labels: {} })
    return commitSnapshot(db, 'n', 'b', 'B', { size: 0, inodes: 0 }, {})
  })
  const top = s.withTransaction((db) => insertSnapshot(db, { ns: 'n', key: 'c', kind: 'view', parent: 'B', labels: {} }))
  t.same(s.read((db) => parentChain(db, top).map((r) => r.key)), ['B', 'A'])
  t.equal(mid.parent, 'A')
  t.throws(() => s.withTransaction((db) => deleteSnapshot(db, resolve(db, 'n', 'A'))), { code: 'ERR_FAILED_PRECONDITION' })
})

t.test('a second connection sees committed state (crash-safety smoke)', async (t) => {
  const { openOne } = await open(t)
  const s1 = openOne()
  s1.withTransaction((db) => insertSnapshot(db, { ns: '', key: 'k', kind: 'active', parent: '', labels: {} }))
  const s2 = openOne()
  t.equal(s2.read((db) => findByKey(db, '', 'k')).length, 1)
})
