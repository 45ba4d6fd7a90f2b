/**
 * `stargz mount` (real FUSE, real docker-registry) of reference-made zstd:chunked layers: the
 * mounted tree equals `zstd -dc | tar -x` of the same blob — names, types, modes, owners, sizes,
 * mtimes, links, xattrs and bytes.
 */
import t from 'tap'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { REPO } from '../../harness/cli.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { snapshotTree, tempDir } from '../../harness/tree.js'
import { mountsUnder, unmountUnder } from '../../harness/containerd.js'

t.setTimeout(600_000)

interface Sidecar { mediaType: string; diffID: string; layerAnnotations: Record<string, string> }
interface Running { child: ChildProcess; log: () => string; exited: Promise<number | null> }

function startMount(args: string[]): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mount', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, log: () => out, exited }
}

async function waitMounted(r: Running): Promise<void> {
  const deadline = Date.now() + 120_000
  while (!r.log().includes('"msg":"mounted"')) {
    if (r.child.exitCode !== null) throw new Error(`stargz mount exited ${r.child.exitCode}: ${r.log()}`)
    if (Date.now() > deadline) throw new Error(`stargz mount did not get ready: ${r.log()}`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

t.test('stargz mount of ctr-remote zstd:chunked layers equals tar -x', async (t) => {
  const dir = await tempDir(t, 'zstd-mount-')
  t.teardown(async () => { await unmountUnder(dir) })
  const reg = await startRegistry()
  t.teardown(() => reg.close())

  for (const name of ['busybox', 'tree-chunked']) {
    await t.test(name, async (t) => {
      const fx = join(REPO, 'test/fixtures/zstd')
      const side = JSON.parse(await readFile(join(fx, `${name}.json`), 'utf8')) as Sidecar
      const blobPath = join(fx, `${name}.zst`)
      const data = await readFile(blobPath)
      const layout = join(dir, `layout-${name}`)
      await writeOciLayout(layout, 'v1', [buildImage({ layers: [{ data, mediaType: side.mediaType, diffId: side.diffID, annotations: side.layerAnnotations }] })])
      const ref = `${reg.host}/zstd/${name}:v1`
      await skopeoPush(layout, 'v1', ref)

      const want = join(dir, `want-${name}`)
      await mkdir(want)
      execFileSync('sh', ['-c', `zstd -dc "$0" | tar --numeric-owner --xattrs --xattrs-include='*' -xpf - -C "$1"`, blobPath, want])

      const mnt = join(dir, `mnt-${name}`)
      await mkdir(mnt)
      const m = startMount([ref, mnt, '--state-dir', join(dir, `state-${name}`), '--hosts-dir', join(dir, 'certs.d'), '--plain-http', '--no-background-fetch'])
      t.teardown(async () => { if (m.child.exitCode === null) m.child.kill('SIGKILL'); await m.exited })
      await waitMounted(m)

      // What a lazy layer mount shows differently from a plain extraction, by design (and as the
      // reference's FUSE does): landmark files are hidden; a whiteout file `.wh.x` is shown the
      // way overlayfs wants it (a 0/0 char device `x`), an opaque marker as the
      // trusted.overlay.opaque xattr on its directory. TOC mtimes have whole seconds (RFC 3339).
      const norm = (tree: Awaited<ReturnType<typeof snapshotTree>>, side: 'got' | 'want'): typeof tree => {
        for (const [k, v] of Object.entries(tree)) {
          const base = k.slice(k.lastIndexOf('/') + 1)
          if (base === '.no.prefetch.landmark' || base === '.prefetch.landmark' || base.startsWith('.wh.')) { delete tree[k]; continue }
          if (side === 'got' && v.type === 'char' && v.rdev?.[0] === 0 && v.rdev[1] === 0) { delete tree[k]; continue }
          if (v.xattrs) {
            delete v.xattrs['trusted.overlay.opaque']
            if (Object.keys(v.xattrs).length === 0) delete v.xattrs
          }
          v.mtimeNs = String((BigInt(v.mtimeNs) + 500_000_000n) / 1_000_000_000n)
        }
        return tree
      }
      const got = norm(await snapshotTree(mnt, ['.']), 'got')
      const expected = norm(await snapshotTree(want, ['.']), 'want')
      const wantKeys = Object.keys(expected).sort()
      t.same(Object.keys(got).filter((k) => !(k in expected)), [], 'no extra paths in the mount')
      t.same(wantKeys.filter((k) => !(k in got)), [], 'no missing paths in the mount')
      let mismatches = 0
      for (const k of wantKeys) {
        if (JSON.stringify(got[k]) !== JSON.stringify(expected[k])) {
          if (mismatches++ < 10) t.same(got[k], expected[k], `${k} matches`)
        }
      }
      t.equal(mismatches, 0, `${wantKeys.length} paths equal (types, modes, owners, sizes, mtimes, links, xattrs, bytes)`)
      m.child.kill('SIGTERM')
      t.equal(await m.exited, 0, 'mount exits 0 on SIGTERM')
      t.same(await mountsUnder(mnt), [], 'nothing left mounted')
    })
  }
})
