// stargzd-test: e2e (mounts what the snapshotter returns with mount(8), so it needs root)
/**
 * The essentials of containerd's snapshotter test suite (snapshots/testsuite), run over gRPC on a
 * unix socket with a real grpc-js client against the service + snapshotter + SQLite store.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile, readFile, mkdir, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import * as grpc from '@grpc/grpc-js'
import { Snapshotter } from '../../src/snapshot/snapshotter.js'
import { startSnapshotServer } from '../../src/grpc/server.js'
import { snapshotsClientConstructor } from '../../src/grpc/proto.js'
import { TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { FakeFileSystem, captureLogger } from '../snapshot/fake-fs.js'

const execFileP = promisify(execFile)

interface MountMsg { type: string; source: string; options: string[] }
interface InfoMsg { name: string; parent: string; kind: string; labels: Record<string, string>; created_at: { seconds: number; nanos: number }; updated_at: { seconds: number; nanos: number } }
type Client = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void> & {
  List(req: unknown, md: grpc.Metadata): grpc.ClientReadableStream<{ info: InfoMsg[] }>
}

const dir = await mkdtemp(join(tmpdir(), 'sgd-grpc-'))
const fs = new FakeFileSystem()
const { log } = captureLogger()
const sn = await Snapshotter.open({ root: join(dir, 'root'), fs, log, mountTimeoutMs: 5000 })
const server = await startSnapshotServer({ address: join(dir, 's.sock'), snapshotter: sn, log })
const Ctor = snapshotsClientConstructor()
const client = new Ctor(`unix:${server.address}`, grpc.credentials.createInsecure()) as unknown as Client
t.teardown(async () => {
  client.close()
  await server.close()
  await sn.close()
  await rm(dir, { recursive: true, force: true })
})

function md(ns = 'testsuite'): grpc.Metadata {
  const m = new grpc.Metadata()
  m.set('containerd-namespace', ns)
  return m
}

function call<R>(method: string, req: object, ns?: string): Promise<R> {
  return new Promise((resolve, reject) => {
    client[method]?.({ snapshotter: 'stargz', ...req }, md(ns), (e, r) => (e ? reject(e) : resolve(r as R)))
  })
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'OK'
  } catch (e) {
    return grpc.status[(e as grpc.ServiceError).code] ?? 'NONE'
  }
}

function list(filters: string[] = [], ns?: string): Promise<{ batches: number; infos: InfoMsg[] }> {
  return new Promise((resolve, reject) => {
    const s = client.List({ snapshotter: 'stargz', filters }, md(ns))
    const infos: InfoMsg[] = []
    let batches = 0
    s.on('data', (m: { info: InfoMsg[] }) => { batches++; infos.push(...m.info) })
    s.on('error', reject)
    s.on('end', () => resolve({ batches, infos }))
  })
}

const prepare = (key: string, parent = '', labels: Record<string, string> = {}, ns?: string) =>
  call<{ mounts: MountMsg[] }>('Prepare', { key, parent, labels }, ns).then((r) => r.mounts)
const view = (key: string, parent: string) => call<{ mounts: MountMsg[] }>('View', { key, parent }).then((r) => r.mounts)
const commit = (name: string, key: string, labels: Record<string, string> = {}) => call('Commit', { name, key, labels })
const stat = (key: string, ns?: string) => call<{ info: InfoMsg }>('Stat', { key }, ns).then((r) => r.info)

async function mountAll(mounts: MountMsg[], target: string): Promise<void> {
  await mkdir(target, { recursive: true })
  const m = mounts[0] as MountMsg
  const opts = m.options.join(',')
  await execFileP('mount', ['-t', m.type === 'bind' ? 'none' : m.type, '-o', m.type === 'bind' ? `bind,${opts}` : opts, m.source, target])
  if (m.type === 'bind' && m.options.includes('ro')) await execFileP('mount', ['-o', 'remount,bind,ro', target])
}
const umount = (target: string) => execFileP('umount', [target])

t.test('prepare → write → commit → child prepare over overlay → view (real mounts)', async (t) => {
  const m1 = await prepare('base-active')
  t.same(m1.map((m) => m.type), ['bind'])
  const mnt = join(dir, 'mnt')
  await mountAll(m1, mnt)
  t.teardown(() => umount(mnt).catch(() => undefined))
  await writeFile(join(mnt, 'foo'), 'foo\n')
  await umount(mnt)
  await commit('base', 'base-active', { l: 'v' })
  const info = await stat('base')
  t.equal(info.kind, 'COMMITTED')
  t.same(info.labels, { l: 'v' })
  t.ok(info.created_at.seconds > 1_600_000_000, 'created_at set')

  const m2 = await prepare('child-active', 'base')
  t.equal(m2[0]?.type, 'overlay')
  await mountAll(m2, mnt)
  t.equal(await readFile(join(mnt, 'foo'), 'utf8'), 'foo\n', 'parent content visible')
  await writeFile(join(mnt, 'bar'), 'bar\n')
  await rm(join(mnt, 'foo'))
  await umount(mnt)
  await commit('child', 'child-active')
  t.equal((await stat('child')).parent, 'base')

  const v = await view('view1', 'child')
  t.equal(v[0]?.type, 'overlay', 'view of two layers is a lowerdir-only overlay')
  t.notOk(v[0]?.options.some((o) => o.startsWith('upperdir=')))
  await mountAll(v, mnt)
  t.same((await readdir(mnt)).sort(), ['bar'], 'whiteout hides foo')
  await umount(mnt)
  const v1 = await view('view-base', 'base')
  t.same(v1[0]?.options, ['ro', 'rbind'], 'view of a single layer is a ro bind of it')
  t.equal((await stat('view1')).kind, 'VIEW')
})

t.test('error codes', async (t) => {
  await prepare('e-active')
  t.equal(await code(prepare('e-active')), 'ALREADY_EXISTS', 'prepare existing key')
  t.equal(await code(prepare('e2', 'missing-parent')), 'NOT_FOUND', 'missing parent')
  t.equal(await code(prepare('e3', 'e-active')), 'INVALID_ARGUMENT', 'parent not committed')
  t.equal(await code(prepare('')), 'INVALID_ARGUMENT', 'empty key')
  t.equal(await code(commit('base', 'e-active')), 'ALREADY_EXISTS', 'commit onto an existing name')
  t.equal(await code(commit('x', 'no-such-key')), 'NOT_FOUND', 'commit missing key')
  t.equal(await code(commit('x', 'view1')), 'FAILED_PRECONDITION', 'commit a view')
  t.equal(await code(call('Mounts', { key: 'base' })), 'FAILED_PRECONDITION', 'mounts of committed')
  t.equal(await code(call('Mounts', { key: 'nope' })), 'NOT_FOUND')
  t.equal(await code(call('Remove', { key: 'base' })), 'FAILED_PRECONDITION', 'remove with children')
  t.equal(await code(call('Remove', { key: 'nope' })), 'NOT_FOUND')
  t.equal(await code(stat('nope')), 'NOT_FOUND')
  t.equal(await code(stat('base', 'other-namespace')), 'NOT_FOUND', 'keys are per namespace')
  t.equal(await code(list(['kind=='])), 'INVALID_ARGUMENT', 'bad filter')
  t.equal(await code(prepare('big', '', { k: 'x'.repeat(5000) })), 'INVALID_ARGUMENT', 'label too big')
})

t.test('remove, then the key can be used again', async (t) => {
  await prepare('r1')
  await call('Remove', { key: 'r1' })
  t.equal(await code(stat('r1')), 'NOT_FOUND')
  await prepare('r1')
  t.equal((await stat('r1')).kind, 'ACTIVE')
})

t.test('update labels', async (t) => {
  await prepare('u1', '', { a: '1', b: '2' })
  const upd = (labels: Record<string, string>, paths?: string[]) =>
    call<{ info: InfoMsg }>('Update', { info: { name: 'u1', labels }, ...(paths ? { update_mask: { paths } } : {}) }).then((r) => r.info)
  let i = await upd({ b: '3', c: '4' }, ['labels.b'])
  t.same(i.labels, { a: '1', b: '3' }, 'labels.<key> updates one label')
  i = await upd({}, ['labels.a'])
  t.same(i.labels, { b: '3' }, 'labels.<key> absent in info deletes it')
  i = await upd({ z: '9' })
  t.same(i.labels, { z: '9' }, 'no mask replaces all labels')
  t.ok(i.updated_at.seconds * 1e9 + i.updated_at.nanos >= i.created_at.seconds * 1e9 + i.created_at.nanos)
  t.equal(await code(upd({}, ['name'])), 'INVALID_ARGUMENT', 'immutable field')
  t.equal(await code(upd({}, ['parent'])), 'INVALID_ARGUMENT')
})

t.test('usage: du of active, stored for committed', async (t) => {
  const m = await prepare('us1')
  await writeFile(join(m[0]?.source as string, 'f'), Buffer.alloc(64 * 1024, 1))
  const u = await call<{ size: number; inodes: number }>('Usage', { key: 'us1' })
  t.equal(u.inodes, 2, 'root dir + file')
  t.ok(u.size >= 64 * 1024)
  await commit('us1-c', 'us1')
  const c = await call<{ size: number; inodes: number }>('Usage', { key: 'us1-c' })
  t.same(c, u, 'committed usage is what was measured at commit')
})

t.test('list: filters and batches of 100', async (t) => {
  for (let i = 0; i < 150; i++) await prepare(`many-${i}`, '', {}, 'bulk')
  const all = await list([], 'bulk')
  t.equal(all.infos.length, 150)
  t.equal(all.batches, 2)
  t.equal((await list(['name~=^many-1[0-9]$'], 'bulk')).infos.length, 10)
  t.equal((await list(['kind==committed'])).infos.every((i) => i.kind === 'COMMITTED'), true)
  t.same((await list(['parent==base'])).infos.map((i) => i.name).sort(), ['child', 'view-base'])
  t.equal((await list(['kind==view', 'kind==committed'])).infos.filter((i) => i.kind === 'ACTIVE').length, 0, 'ORed filters')
})

t.test('remote prepare answers ALREADY_EXISTS over gRPC and the chain is found as containerd looks', async (t) => {
  const labels = {
    [TARGET_SNAPSHOT_LABEL]: 'sha256:remote1',
    'containerd.io/snapshot/remote/stargz.reference': 'r/x:1',
    'containerd.io/snapshot/remote/stargz.digest': 'sha256:l1',
  }
  t.equal(await code(prepare('extract-x sha256:remote1', '', labels)), 'ALREADY_EXISTS')
  const found = await list(['labels."containerd.io/snapshot.ref"==sha256:remote1,parent==""'])
  t.same(found.infos.map((i) => [i.name, i.kind]), [['sha256:remote1', 'COMMITTED']])
  t.equal((await stat('sha256:remote1')).kind, 'COMMITTED')
})

t.test('cleanup removes directories no snapshot owns', async (t) => {
  const orphan = join(dir, 'root', 'snapshots', '424242')
  await mkdir(join(orphan, 'fs'), { recursive: true })
  await call('Cleanup', {})
  await t.rejects(readdir(orphan))
  t.equal((await stat('base')).kind, 'COMMITTED', 'live snapshots untouched')
})
