/**
 * #10 §1 interop, FUSE reader path: `stargz mount` (real FUSE + overlayfs) of every corpus layer,
 * pushed to a real docker-registry as the reference converter wrote it and as our writer
 * converts the producer's layer. The mounted tree must equal GNU `tar -x` of the source (minus
 * the whiteout markers, which overlayfs consumes): same names, types, modes, symlink targets and
 * bytes of every file.
 */
import t from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { RegistryClient } from '../../src/registry/client.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { listMounts } from '../../src/fuse/unmount.js'
import { REPO } from '../../harness/cli.js'
import { startRegistry } from '../../harness/registry.js'
import { convertFile } from '../../harness/convert.js'
import { scratch } from '../../harness/fuse-fixtures.js'
import { isWhiteout, loadCorpus, walkTree } from './corpus.js'

t.setTimeout(1_800_000)
const execFileP = promisify(execFile)

interface Running { child: ChildProcess; stderr: () => string; exited: Promise<number | null> }

function startMount(args: string[]): Running {
  // Through src/cli/main.ts, not `-e` with --input-type=module: worker threads inherit execArgv,
  // and the chunk decoder worker's eval'd CommonJS source fails under that flag.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mount', ...args], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (b: Buffer) => { err += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, stderr: () => err, exited }
}

async function mounted(r: Running): Promise<boolean> {
  for (;;) {
    if (r.stderr().split('\n').some((l) => l.includes('"msg":"mounted"'))) return true
    if (r.child.exitCode !== null) return false
    await new Promise((res) => setTimeout(res, 50))
  }
}

const corpus = await loadCorpus()

t.test('stargz mount reads every corpus layer byte-exact', async (t) => {
  const dir = await scratch(t, 'stargz-interop-mount-')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const config = (diffId: string): Buffer => Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] } }))

  for (const e of corpus.entries) {
    const raw = await walkTree(join(corpus.dir, e.extract))
    const want = await walkTree(join(corpus.dir, e.extract), isWhiteout)
    const ours = join(dir, `${e.name}.estargz`)
    const conv = await convertFile(join(corpus.dir, e.producerLayer ?? e.source), ours, { chunkSize: 65536 })
    const variants = [
      { label: `${e.name} (ctr-remote)`, data: await readFile(join(corpus.dir, e.blob)), diffId: e.diffID, tocDigest: e.tocDigest },
      { label: `${e.name} (stargz convert)`, data: await readFile(ours), diffId: conv.diffID, tocDigest: conv.tocDigest },
    ]
    for (const [i, v] of variants.entries()) {
      const ref = `${reg.host}/interop/${e.name}:v${i}`
      await client.pushImage(ref, config(v.diffId), [{ data: v.data, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', annotations: { [TOC_DIGEST_ANNOTATION]: v.tocDigest } }])
      const mnt = join(dir, `${e.name}-${i}-mnt`)
      await mkdir(mnt)
      const r = startMount([ref, mnt, '--plain-http', '--state-dir', join(dir, `${e.name}-${i}-state`)])
      t.teardown(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
      const up = await mounted(r)
      t.ok(up, `${v.label}: mounted lazily`, up ? {} : { stderr: r.stderr() })
      if (up) {
        // overlayfs reads a directory that only one layer has straight from that layer, so the
        // bottom layer's whiteouts (char 0/0 at the whited-out name) are listed; containerd's own
        // overlay snapshotter shows the same for a whiteout in an image's first layer.
        const whitedOut = (rel: string, base: string): boolean => raw.has(rel.slice(0, rel.length - base.length) + '.wh.' + base)
        const got = await walkTree(mnt, whitedOut).catch((err: unknown) => { t.fail(`${v.label}: ${String(err)}`, { stderr: r.stderr().slice(-3000) }); return new Map() })
        t.same([...got.keys()].sort(), [...want.keys()].sort(), `${v.label}: same names`)
        let bytes = 0
        for (const [name, node] of want) {
          if (node.type === 'reg') bytes++
          t.same(got.get(name), node, `${v.label}: ${name}`)
        }
        t.ok(bytes > 0, `${v.label}: ${bytes} files compared byte for byte`)
        if (e.name === 'gnu-pax' || e.name === 'bsdtar') {
          const { stdout } = await execFileP('getfattr', ['--only-values', '-n', 'user.interop', join(mnt, 'data/xattr.txt')])
          t.equal(stdout, 'value-1', `${v.label}: xattr through FUSE`)
        }
      }
      r.child.kill('SIGTERM')
      t.equal(await r.exited, 0, `${v.label}: exits 0 on SIGTERM`)
    }
  }
  const left = (await listMounts()).map((m) => m.mountpoint).filter((m) => m.startsWith(dir))
  t.same(left, [], 'nothing left mounted')
})
