/**
 * `stargz optimize` on the python3 image: python3's binary, the libraries it loads and the
 * modules it imports at start-up all go before `.prefetch.landmark`.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OciLayoutInput } from '../../src/convert/oci-layout.js'
import { parsePrioritizedList } from '../../src/convert/prioritized-list.js'
import { listMounts } from '../../src/fuse/unmount.js'
import { buildImage, writeOciLayout } from '../../harness/image.js'
import { gzipFileLayer, prefetchOrder, pythonRootfs, readImage, runCommand, tempDir } from '../../harness/convert-fixtures.js'

t.setTimeout(1_800_000)

t.test('optimize python3 -c print("hello")', async (t) => {
  const dir = await tempDir(t, 'stargz-optimize-py-')
  const layout = join(dir, 'layout')
  await writeOciLayout(layout, 'py', [buildImage({ layers: [await gzipFileLayer(await pythonRootfs())] })])
  const record = join(dir, 'record.jsonl')
  const r = await runCommand('optimize', [`oci:${layout}:py`, `oci:${join(dir, 'out')}:opt`, '--cache-dir', join(dir, 'cache'), '--json',
    '--record-out', record, '--state-dir', join(dir, 'state'), '--period', '120', '--', 'python3', '-c', 'print("hello")'])
  t.equal(r.code, 0, 'optimize exits 0', { stderr: r.stderr })
  t.match(r.stderr, /^hello$/m, 'the workload printed hello')
  t.same((await listMounts()).filter((m) => m.mountpoint.startsWith(dir)), [], 'nothing left mounted')

  const recorded = parsePrioritizedList(await readFile(record, 'utf8'), record).map((x) => x.path)
  t.ok(recorded.length >= 10, `recorded ${recorded.length} files`)
  // containerd reads /etc/passwd and /etc/group when it builds the spec; then the workload runs.
  t.same(recorded.slice(0, 2), ['/etc/passwd', '/etc/group'], 'the runtime files first')
  t.match(recorded[2], /^\/usr\/bin\/python3\.\d+$/, 'then python3 (the real binary, through its symlink)')

  const input = new OciLayoutInput(join(dir, 'out'), 'opt')
  const img = await readImage(input)
  const o = await prefetchOrder(input, img.manifest.layers[0] as never)
  t.equal(o.landmark, 'prefetch', '.prefetch.landmark exists')
  t.same(o.files, recorded.map((p) => p.slice(1)), 'exactly the recorded files precede the landmark, in order')
  t.ok(o.files.some((f) => /^usr\/bin\/python3\.\d+$/.test(f)), 'python3 binary before the landmark')
  t.ok(o.files.some((f) => /\/libc\.so\.6$/.test(f)), 'libc before the landmark')
  t.ok(o.files.some((f) => /\/ld-linux[^/]*\.so\.\d+$/.test(f)), 'the dynamic loader before the landmark')
  t.ok(o.files.some((f) => /^usr\/lib\/python3\.\d+\/encodings\/(__pycache__\/)?__init__[.a-z0-9-]*\.pyc?$/.test(f)), 'start-up modules before the landmark', { files: o.files })
  t.notOk(o.files.some((f) => f.startsWith('usr/share/doc/')), 'nothing unread before the landmark')
})
