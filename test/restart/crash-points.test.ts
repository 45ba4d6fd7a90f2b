// stargzd-test: e2e (real daemon, FUSE mounts and snapshot dirs owned by root)
/**
 * kill -9 at every step of Prepare / Commit / Remove (issue #11): the real stargzd (in-process
 * FUSE, a real docker-registry with an eStargz image) is started with STARGZD_CRASH_AT=<point>
 * (src/snapshot/crash-points.ts, a test hook) and driven over gRPC as containerd drives it for a
 * lazy pull, a container's snapshot, a commit and the clean-up. It kills itself at the point; it
 * is started again, and then:
 *   - the mounts under the root are exactly the remote snapshots' <id>/fs dirs (no stale mount);
 *   - snapshots/ holds exactly one dir per record (no orphan, no new-* temp dir), and each
 *     record's dir is there; no temp file is left beside the layer records;
 *   - the same work done again succeeds, and removing everything leaves 0 mounts, 0 dirs.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import * as grpc from '@grpc/grpc-js'
import { snapshotsClientConstructor } from '../../src/grpc/proto.js'
import { CRASH_ENV, CRASH_POINTS } from '../../src/snapshot/crash-points.js'
import { REMOTE_LABEL, TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { MetaStore } from '../../src/store/metastore.js'
import { listRecords } from '../../src/store/snapshot-records.js'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { RegistryClient } from '../../src/registry/client.js'
import { mountsUnder } from '../../harness/containerd.js'
import { blobFromTree, scratch } from '../../harness/fuse-fixtures.js'
import { startRegistry } from '../../harness/registry.js'
import { startStargzd, type StargzdProcess } from '../../harness/stargzd.js'

function sha(b: Buffer): string { return 'sha256:' + createHash('sha256').update(b).digest('hex') }

const work = await scratch(t, 'sgd-crash-')
const reg = await startRegistry()
t.teardown(() => reg.close())
const built = await blobFromTree(join(work, 'layer'), [{ type: 'file', path: 'etc/os-release', content: 'ID=crash\n', mtime: 1_700_000_000 }])
const esgz = await readFile(built.blob)
const tarBytes = await readFile(built.tar)
const tocDigest = await (async () => {
  const src = await FileRangeSource.open(built.blob)
  try { return (await EstargzReader.open(src)).tocDigest } finally { await src.close() }
})()
const imageRef = `${reg.host}/test/crash:1`
{
  const pusher = new RegistryClient({ plainHttp: true })
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tarBytes)] } }))
  await pusher.pushImage(imageRef, config, [{ data: esgz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }])
  await pusher.close()
}
const layerDigest = sha(esgz)
const CHAIN = 'sha256:' + 'c'.repeat(64)
const remoteLabels = {
  [TARGET_SNAPSHOT_LABEL]: CHAIN,
  'containerd.io/snapshot/remote/stargz.reference': imageRef,
  'containerd.io/snapshot/remote/stargz.digest': layerDigest,
  'containerd.io/snapshot/stargz/toc.digest': tocDigest,
}

type Client = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void>

function client(sock: string): Client {
  const Ctor = snapshotsClientConstructor()
  return new Ctor(`unix:${sock}`, grpc.credentials.createInsecure()) as unknown as Client
}

function call(c: Client, method: string, req: object): Promise<'OK' | string> {
  const md = new grpc.Metadata()
  md.set('containerd-namespace', 'default')
  return new Promise((resolve) => {
    c[method]?.({ snapshotter: 'stargz', ...req }, md, { deadline: Date.now() + 60_000 }, (e) => resolve(e ? (grpc.status[e.code] ?? String(e.code)) : 'OK'))
  })
}

/** What containerd does for a lazy pull, a container, a commit and the clean-up; stops at the first transport failure. */
async function workload(c: Client, n: number, removeChain: boolean): Promise<string[]> {
  const steps: Array<[string, object]> = [
    ['Prepare', { key: `extract-${n}`, parent: '', labels: remoteLabels }],
    ['Prepare', { key: `ctr-${n}`, parent: CHAIN, labels: {} }],
    ['Commit', { name: `snap-${n}`, key: `ctr-${n}`, labels: {} }],
    ['Remove', { key: `snap-${n}` }],
    ...(removeChain ? [['Remove', { key: CHAIN }] as [string, object]] : []),
  ]
  const out: string[] = []
  for (const [m, req] of steps) {
    const r = await call(c, m, req)
    out.push(`${m}:${r}`)
    if (r === 'UNAVAILABLE' || r === 'CANCELLED') break
  }
  return out
}

async function start(dir: string, env: NodeJS.ProcessEnv = {}): Promise<StargzdProcess> {
  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'noprefetch = true\nno_background_fetch = true\n')
  const p = await startStargzd(['--root', join(dir, 'root'), '--address', join(dir, 's.sock'), '--config', cfg, '--hosts-dir', join(dir, 'certs.d')], env)
  await p.waitFor((l) => l.msg === 'ready')
  return p
}

/** Records as the store has them (WAL: readable while the daemon runs). */
function records(root: string): { id: string; key: string; remote: boolean }[] {
  const store = MetaStore.open(join(root, 'metadata.db'))
  try {
    return store.read((db) => listRecords(db, undefined)).map((r) => ({ id: String(r.id), key: r.key, remote: r.labels[REMOTE_LABEL] !== undefined }))
  } finally {
    store.close()
  }
}

t.test('kill -9 at every crash point: restart finds store, dirs and mounts in agreement, nothing leaked', async (t) => {
  for (const point of CRASH_POINTS) {
    await t.test(point, async (t) => {
      const dir = await scratch(t, `sgd-crash-${point.replace(':', '-')}-`)
      const c0 = await start(dir, { [CRASH_ENV]: point })
      t.teardown(() => c0.close())
      const cl = client(join(dir, 's.sock'))
      const done = await workload(cl, 1, true)
      cl.close()
      // Every point lies on the workload's path: the daemon is dead by now (else the point was missed).
      const ex = await Promise.race([c0.exited(), sleep(20_000).then(() => undefined)])
      t.equal(ex?.signal, 'SIGKILL', `killed at ${point} (calls: ${done.join(' ')})`)
      if (ex === undefined) return

      const p = await start(dir)
      t.teardown(() => p.close())
      await p.waitFor((l) => l.msg === 'restored remote snapshots', 120_000)
      const root = join(dir, 'root')
      const snaps = join(root, 'snapshots')
      const recs = records(root)
      const mounts = (await mountsUnder(root)).sort()
      const dirs = (await readdir(snaps)).sort()
      t.same(dirs, recs.map((r) => r.id).sort(), `snapshots/ holds one dir per record, nothing else (${dirs.join(', ')})`)
      t.same(mounts, recs.filter((r) => r.remote).map((r) => join(snaps, r.id, 'fs')).sort(), 'mounted: exactly the remote snapshots')
      const layerFiles = await readdir(join(root, 'layers')).catch(() => [] as string[])
      t.same(layerFiles.filter((f) => !f.endsWith('.layer')), [], 'no temp file beside the layer records')

      // The same work again, with new keys: it must not trip over what the crash left.
      const cl2 = client(join(dir, 's.sock'))
      const again = await workload(cl2, 2, false)
      t.same(again, ['Prepare:ALREADY_EXISTS', 'Prepare:OK', 'Commit:OK', 'Remove:OK'], `the workload runs after the restart (${again.join(' ')})`)
      // Everything goes: children first (higher ids).
      const left = records(root).sort((x, y) => Number(y.id) - Number(x.id))
      for (const r of left) t.equal(await call(cl2, 'Remove', { key: r.key }), 'OK', `remove ${r.key}`)
      cl2.close()
      t.same(await mountsUnder(root), [], '0 mounts once everything is removed')
      t.same(await readdir(snaps), [], '0 snapshot dirs once everything is removed')
      const r = await p.close()
      t.equal(r.code, 0, 'SIGTERM exits 0')
      t.same(await mountsUnder(root), [], '0 mounts after SIGTERM')
    })
  }
})
