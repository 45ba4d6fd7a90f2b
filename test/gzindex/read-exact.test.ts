// stargzd-test: e2e
// (the python3/busybox rootfs fixtures are built with debootstrap as root)
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { REPO } from '../../harness/cli.js'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { buildIndex } from '../../src/gzindex/build.js'
import { decodeIndex } from '../../src/gzindex/format.js'
import { cleanName, GzIndexReader } from '../../src/gzindex/reader.js'
import { tarOf } from '../../harness/image.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'

// Every file read through the index is byte-exact against `tar -x` of the same layer, for the
// busybox and python3 rootfs fixtures, several gzip levels, multi-member gzip and stored blocks.
const work = mkdtempSync(join(tmpdir(), 'gzindex-read-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

function fixture(script: string): string {
  return execFileSync('bash', [join(REPO, 'scripts/fixtures', script)], { encoding: 'utf8' }).trim()
}

async function checkAll(t: Test, name: string, gz: string, tarPath: string, spacing: number): Promise<void> {
  const digest = `sha256:${createHash('sha256').update(readFileSync(gz)).digest('hex')}`
  const size = lstatSync(gz).size
  const built = await buildIndex(createReadStream(gz, { highWaterMark: 256 * 1024 }), { layer: { digest, size }, spacing })
  t.equal(`sha256:${built.inputSha256}`, digest, `${name}: input hash`)
  const index = decodeIndex(built.blob, { digest, size })
  t.ok(index.spans.length >= 1, `${name}: ${index.spans.length} spans`)
  const out = join(work, name)
  execFileSync('mkdir', ['-p', out])
  execFileSync('tar', ['-x', '-f', tarPath, '-C', out, '--numeric-owner', '--no-same-owner'])
  const src = await FileRangeSource.open(gz)
  t.teardown(() => src.close())
  const reader = new GzIndexReader(index, src, { cache: new MemoryCache({ maxBytes: 256 << 20 }) })
  let files = 0
  let mismatches = 0
  let bytes = 0
  const seen = new Set<string>()
  for (const f of [...index.files].reverse()) {
    const p = cleanName(f.name)
    if (seen.has(p) || p === '' || p.split('/').pop()!.startsWith('.wh.')) continue
    seen.add(p)
    const onDisk = join(out, p)
    if (f.type === 'reg' || f.type === 'hardlink') {
      const target = f.type === 'hardlink' ? reader.lookup(f.linkName!) : f
      if (!target || target.type !== 'reg') { mismatches++; continue }
      const data = await reader.read(target, 0, target.size)
      if (!data.equals(readFileSync(onDisk))) { mismatches++; t.fail(`${name}: ${p} differs`) }
      if (createHash('sha256').update(data).digest('hex') !== target.sha256) mismatches++
      files++
      bytes += data.length
    } else if (f.type === 'symlink') {
      if (readlinkSync(onDisk) !== f.linkName) { mismatches++; t.fail(`${name}: symlink ${p}`) }
    }
  }
  t.equal(mismatches, 0, `${name}: ${files} files (${bytes} bytes) byte-exact against tar -x`)
  // Partial reads across span edges, at odd offsets.
  const big = index.files.filter((f) => f.type === 'reg').sort((a, b) => b.size - a.size)[0]!
  const whole = readFileSync(join(out, cleanName(big.name)))
  let partial = 0
  for (let off = 1; off < big.size; off += Math.max(1, Math.floor(big.size / 37))) {
    const len = 1 + ((off * 7919) % 300_000)
    const got = await reader.read(big, off, len)
    if (!got.equals(whole.subarray(off, off + len))) partial++
  }
  t.equal(partial, 0, `${name}: partial reads of ${big.name} exact`)
  t.equal(reader.stats.verifyFailures, 0)
}

t.test('busybox rootfs, gzip -1/-6/-9, 64 KiB spacing', async (t) => {
  const tarPath = fixture('busybox-rootfs.sh')
  for (const level of [1, 6, 9]) {
    const gz = join(work, `busybox-${level}.tar.gz`)
    execFileSync('sh', ['-c', `gzip -${level} -c '${tarPath}' > '${gz}'`])
    await checkAll(t, `busybox-gzip${level}`, gz, tarPath, 64 * 1024)
  }
})

t.test('multi-member gzip with stored blocks (random data) and an empty member', async (t) => {
  const files = [
    { name: 'a/', type: 'dir' as const },
    { name: 'a/random.bin', data: randomBytes(900_000) },
    { name: 'a/text.txt', data: Buffer.from('hello gzindex\n'.repeat(50_000)) },
    { name: 'a/mixed.bin', data: Buffer.concat([randomBytes(100_000), Buffer.alloc(300_000, 7), randomBytes(77_777)]) },
    { name: 'a/empty', data: Buffer.alloc(0) },
  ]
  const tar = tarOf(files)
  const tarPath = join(work, 'mm.tar')
  writeFileSync(tarPath, tar)
  const cut = 123_457
  const gz = join(work, 'mm.tar.gz')
  writeFileSync(gz, Buffer.concat([gzipSync(tar.subarray(0, cut), { level: 6 }), gzipSync(Buffer.alloc(0)), gzipSync(tar.subarray(cut), { level: 1 })]))
  await checkAll(t, 'multi-member', gz, tarPath, 64 * 1024)
})

t.test('python3 rootfs, gzip -6, 1 MiB and 4 MiB spacing', async (t) => {
  const tarPath = fixture('python-rootfs.sh')
  const gz = join(work, 'python.tar.gz')
  execFileSync('sh', ['-c', `gzip -6 -c '${tarPath}' > '${gz}'`])
  await checkAll(t, 'python-4m', gz, tarPath, 4 << 20)
  await checkAll(t, 'python-1m', gz, tarPath, 1 << 20)
})
