import t from 'tap'
import fc from 'fast-check'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TocIndex } from '../../src/estargz/toc-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type TocEntry } from '../../src/estargz/types.js'
import { InodeTable } from '../../src/fuse/inode-table.js'
import { LimitError } from '../../src/errors.js'
import { CompactIndex, openIndexFile, writeIndexFile } from '../../src/index/compact-index.js'
import { compactFromTocJson } from '../../src/index/toc-build.js'
import { serializeToc } from '../../src/estargz/toc-json.js'
import { validateToc } from '../../src/estargz/toc-validate.js'
import { sha256Digest } from '../../src/estargz/toc-read.js'

// The compact index must answer exactly what the object index (TocIndex) and the FUSE tree
// (InodeTable) answer: every lookup, getattr, readdir, readlink, xattr and chunk mapping.

const SEGMENTS = ['a', 'b', 'c', 'é', '.wh.a', '.wh.b', '.wh..wh..opq', 'd😀', '😀', 'ｱ', 'stargz.index.json', PREFETCH_LANDMARK]
const T = ['2024-01-02T03:04:05Z', '2020-05-06T07:08:09.5Z', undefined]
const DIGEST = (i: number): string => 'sha256:' + i.toString(16).padStart(64, '0')

const pathArb = fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 3 }).map((p) => p.join('/'))
const entryArb = fc.record({
  name: pathArb,
  kind: fc.constantFrom('dir', 'reg', 'reg', 'reg', 'symlink', 'hardlink', 'char', 'fifo'),
  size: fc.nat({ max: 100_000 }),
  chunks: fc.nat({ max: 4 }),
  mode: fc.option(fc.nat({ max: 0o7777 }), { nil: undefined }),
  uid: fc.option(fc.nat({ max: 70_000 }), { nil: undefined }),
  modtime: fc.constantFrom(...T),
  xattrs: fc.option(fc.dictionary(fc.constantFrom('user.a', 'user.b', 'security.capability'), fc.uint8Array({ maxLength: 6 }).map((b) => Buffer.from(b).toString('base64')), { maxKeys: 2 }), { nil: undefined }),
  link: pathArb,
  digestKind: fc.constantFrom('sha', 'none', 'other'),
})

type Spec = typeof entryArb extends fc.Arbitrary<infer R> ? R : never

function tocOf(specs: Spec[]): TocEntry[] {
  const out: TocEntry[] = []
  const seen = new Set<string>()
  let off = 0
  let d = 0
  for (const s of specs) {
    if (seen.has(s.name)) continue
    seen.add(s.name)
    const common = { name: s.name, mode: s.mode, uid: s.uid, gid: s.uid, modtime: s.modtime, xattrs: s.xattrs }
    if (s.kind === 'reg') {
      const n = s.size === 0 ? 0 : Math.min(s.chunks + 1, s.size)
      const step = n > 0 ? Math.floor(s.size / n) : 0
      const dg = (): string | undefined => (s.digestKind === 'sha' ? DIGEST(++d) : s.digestKind === 'other' ? `sha512:${++d}` : undefined)
      out.push({ ...common, type: 'reg', size: s.size, offset: (off += 100), chunkSize: n > 1 ? step : undefined, chunkDigest: n > 1 ? dg() : undefined, digest: DIGEST(++d) })
      for (let i = 1; i < n; i++) out.push({ name: s.name, type: 'chunk', offset: (off += 100), chunkOffset: i * step, chunkSize: i === n - 1 ? undefined : step, chunkDigest: dg() })
    } else if (s.kind === 'symlink' || s.kind === 'hardlink') out.push({ ...common, type: s.kind, linkName: s.link })
    else if (s.kind === 'char') out.push({ ...common, type: 'char', devMajor: 1, devMinor: s.size % 256 })
    else out.push({ ...common, type: s.kind as 'dir' | 'fifo' })
  }
  return out
}

function objectIndex(entries: TocEntry[], codec: 'gzip' | 'zstd' = 'gzip'): TocIndex {
  return new TocIndex({ version: 1, entries }, 1 << 30, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK }, codec)
}

function compare(t: { same: (a: unknown, b: unknown, m: string) => unknown }, index: TocIndex, tab: InodeTable, c: CompactIndex, probes: string[]): void {
  const attrs = (x: InodeTable | CompactIndex, s: number) => ({
    path: x.path(s), base: x.baseName(s), parent: x.parent(s), primary: x.primary(s), ino: x.ino(s), mode: x.mode(s), uid: x.uid(s),
    gid: x.gid(s), rdev: x.rdev(s), nlink: x.nlink(s), size: x.size(s), mtime: x.mtimeMs(s), dir: x.isDir(s), reg: x.isRegular(s),
    wh: x.isWhiteout(s), opq: x.isOpaque(s), xa: x.hasXattrs(s), toc: x.tocName(s), kids: [...x.children(s)],
  })
  const problems: string[] = []
  const same = (a: unknown, b: unknown, what: string): void => { if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(`${what}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`) }
  same(c.count, tab.count, 'count')
  same(c.maxIno, tab.maxIno, 'maxIno')
  same(c.payloads(), index.payloads, 'payloads')
  let any = false
  for (let s = 0; s < tab.count; s++) {
    const p = tab.path(s)
    same(c.lookup(p), tab.lookup(p), `lookup ${p}`)
    same(c.lookupFusePath('/' + p), tab.lookupFusePath('/' + p), `fuse lookup ${p}`)
    same(attrs(c, s), attrs(tab, s), `attrs ${p}`)
    any ||= tab.hasXattrs(s) || tab.isOpaque(s)
    if (tab.isWhiteout(s)) continue
    const e = index.entries.get(tab.tocName(s))
    same(c.linkTarget(s), e?.type === 'symlink' ? (e.linkName ?? '') : undefined, `readlink ${p}`)
    const xa = tab.hasXattrs(s) ? Object.entries(e?.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('hex')]) : []
    same(c.xattrs(s).map(([k, v]) => [k, v.toString('hex')]), xa, `xattrs ${p}`)
    for (const [k, v] of xa) same(c.xattr(s, k as string)?.toString('hex'), v, `xattr ${p} ${k}`)
    if (tab.isRegular(s)) {
      same(c.chunks(p), index.chunks(p), `chunks ${p}`)
      const size = tab.size(s)
      for (const [o, l] of [[0, 1], [0, size], [size >> 1, 1], [size >> 2, size >> 1], [size - 1, 10], [size, 5]] as Array<[number, number]>) {
        same(c.chunksInRange(p, o, l), index.chunksInRange(p, o, l), `chunksInRange ${p} ${o}+${l}`)
      }
    }
  }
  same(c.anyXattrs, any, 'anyXattrs')
  for (const p of probes) same(c.lookup(p), tab.lookup(p), `probe ${p}`)
  // The LayerIndex surface the layer and the reader use.
  same(c.payloadCount, index.payloadCount, 'payloadCount')
  for (let i = 0; i < c.payloadCount; i++) same(c.payload(i), index.payload(i), `payload ${i}`)
  same(c.landmarkOffset, index.landmarkOffset, 'landmarkOffset')
  same(c.noPrefetchLandmark, index.noPrefetchLandmark, 'noPrefetchLandmark')
  const facts = (e: TocEntry | undefined) => e === undefined ? undefined : { name: e.name, type: e.type, size: e.type === 'reg' ? (e.size ?? 0) : undefined, offset: e.type === 'reg' && index.chunks(e.name).length > 0 ? e.offset : undefined }
  const regs = new Set<string>()
  for (let s = 0; s < tab.count; s++) {
    if (tab.isWhiteout(s) || !tab.isRegular(s)) continue
    const p = tab.path(s)
    const want = index.resolve(p)
    // A hardlink to a missing or non-regular target is an empty file in the tree; the object
    // index resolves it to the hardlink entry itself. Neither has payload to read.
    if (want?.type !== 'reg' || tab.lookup(want.name) !== tab.primary(s)) continue
    same(facts(c.resolve(p)), facts(want), `resolve ${p}`)
    if (index.chunks(p).length > 0) regs.add(want.name)
  }
  // (A hardlink to a file the tree hides, e.g. a whiteout, is a file of its own in the tree.)
  same([...c.regularFiles()].map((e) => e.name).filter((n) => index.resolve(n)?.name === n).sort(), [...index.regularFiles()].map((e) => e.name).filter((n) => tab.lookup(n) >= 0 && !tab.isWhiteout(tab.lookup(n))).sort(), 'regularFiles')
  t.same(problems, [], 'compact index answers like the object index')
}

t.test('random TOCs: compact index == object index + inode table, built and re-opened', async (t) => {
  let runs = 0
  fc.assert(fc.property(fc.array(entryArb, { maxLength: 40 }), fc.array(pathArb, { maxLength: 5 }), fc.constantFrom('gzip' as const, 'zstd' as const), (specs, probes, codec) => {
    const index = objectIndex(tocOf(specs), codec)
    const tab = InodeTable.build(index)
    const built = CompactIndex.build(index, tab)
    const problems: unknown[] = []
    const sink = { same: (a: unknown, b: unknown, _m: string) => { if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(a) } }
    compare(sink, index, tab, built, probes)
    // In place from a copy at an odd offset (forces the aligned copy) and at offset 0.
    const odd = Buffer.alloc(built.bytes().length + 1)
    built.bytes().copy(odd, 1)
    compare(sink, index, tab, CompactIndex.fromBuffer(odd.subarray(1)), probes)
    compare(sink, index, tab, CompactIndex.fromBuffer(Buffer.from(built.bytes())), probes)
    runs++
    return problems.length === 0
  }), { numRuns: 300 })
  t.ok(runs >= 300, `${runs} random TOCs`)
})

t.test('a fixed TOC with every kind of entry', async (t) => {
  const entries: TocEntry[] = [
    { name: 'etc', type: 'dir', mode: 0o755, modtime: T[0] },
    { name: 'etc/passwd', type: 'reg', size: 10, mode: 0o644, offset: 0, digest: DIGEST(1) },
    { name: 'etc/passwd-', type: 'hardlink', linkName: 'etc/passwd' },
    { name: 'big', type: 'reg', size: 300, offset: 100, chunkSize: 100, chunkDigest: DIGEST(2) },
    { name: 'big', type: 'chunk', offset: 200, chunkOffset: 100, chunkSize: 100, chunkDigest: DIGEST(3) },
    { name: 'big', type: 'chunk', offset: 300, chunkOffset: 200, chunkDigest: DIGEST(4) },
    { name: 'l', type: 'symlink', linkName: 'etc/passwd' },
    { name: 'var', type: 'dir' },
    { name: 'var/.wh..wh..opq', type: 'reg', size: 0 },
    { name: 'etc/.wh.shadow', type: 'reg', size: 0 },
    { name: 'x', type: 'dir', xattrs: { 'user.a': Buffer.from('b').toString('base64') } },
    { name: 'y', type: 'dir', xattrs: { 'user.a': Buffer.from('b').toString('base64') } },
  ]
  const index = objectIndex(entries)
  const tab = InodeTable.build(index)
  const c = CompactIndex.build(index, tab)
  compare(t, index, tab, c, ['nope', 'etc/shadow', 'var/.wh..wh..opq'])
  t.equal(c.linkTarget(c.lookup('l')), 'etc/passwd')
  t.equal(c.xattr(c.lookup('y'), 'user.a')?.toString(), 'b')
  t.ok(c.isWhiteout(c.lookup('etc/shadow')))
  t.ok(c.isOpaque(c.lookup('var')))
  t.same(c.chunksInRange('big', 150, 100).map((r) => r.chunkOffset), [100, 200])
  t.equal(c.chunks('etc/passwd-')[0]?.name, 'etc/passwd', 'hardlink chunks are the target\'s')
  t.ok(c.anyXattrs)
  t.notOk(CompactIndex.build(objectIndex([{ name: 'f', type: 'reg', size: 0 }])).anyXattrs, 'no xattrs, no opaque dirs')
})

t.test('index file: written, re-opened in place, refused when damaged', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-index-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const index = objectIndex([{ name: 'a/b', type: 'reg', size: 5, offset: 0, digest: DIGEST(9) }, { name: 'c', type: 'symlink', linkName: 'a/b' }])
  const c = CompactIndex.build(index)
  const file = join(dir, 'layer.idx')
  await writeIndexFile(file, c)
  const back = await openIndexFile(file)
  t.equal(back.lookup('a/b'), c.lookup('a/b'))
  t.same(back.chunks('a/b'), index.chunks('a/b'))
  const good = await readFile(file)
  for (const [what, mutate] of [
    ['one flipped bit', (b: Buffer) => { b[b.length >> 1] = (b[b.length >> 1] as number) ^ 1 }],
    ['bad magic', (b: Buffer) => { b[0] = 0 }],
    ['other version', (b: Buffer) => { b.writeUInt32LE(99, 8) }],
    ['truncated', (b: Buffer) => b.subarray(0, b.length - 1)],
    ['empty', () => Buffer.alloc(0)],
  ] as Array<[string, (b: Buffer) => Buffer | void]>) {
    const b = Buffer.from(good)
    await writeFile(file, mutate(b) ?? b)
    await t.rejects(openIndexFile(file), { code: 'ERR_TOC_INVALID', rule: 'index-file' }, what)
  }
})

t.test('budgets: per-layer bytes and a daemon-wide reservation released by close()', async (t) => {
  const index = objectIndex([{ name: 'a', type: 'reg', size: 5, offset: 0 }])
  const size = CompactIndex.build(index).byteLength()
  t.throws(() => CompactIndex.build(index, undefined, { maxBytes: size - 1, what: 'sha256:abc' }), { code: 'ERR_LIMIT_EXCEEDED', message: /sha256:abc/ })
  let used = 0
  const budget = {
    reserve(bytes: number, what: string) {
      if (used + bytes > size * 2) throw new LimitError(`${what}: over budget`)
      used += bytes
      let done = false
      return { release() { if (!done) { done = true; used -= bytes } } }
    },
  }
  const a = CompactIndex.build(index, undefined, { budget })
  const b = CompactIndex.fromBuffer(Buffer.from(a.bytes()), { budget })
  t.equal(used, 2 * size)
  t.throws(() => CompactIndex.build(index, undefined, { budget }), { code: 'ERR_LIMIT_EXCEEDED' })
  a.close(); a.close()
  t.equal(used, size, 'close releases once')
  b.close()
  t.equal(used, 0)
})

t.test('random TOCs: the streaming build (JSON → scanner → validator → columns) == object index of the validated TOC', async (t) => {
  let accepted = 0
  let refused = 0
  fc.assert(fc.property(fc.array(entryArb, { maxLength: 40 }), fc.array(pathArb, { maxLength: 5 }), fc.constantFrom('estargz' as const, 'legacy' as const, 'zstd' as const), (specs, probes, kind) => {
    const json = serializeToc(tocOf(specs))
    const footer = { kind, size: 51, tocOffset: 1 << 30 }
    let toc: ReturnType<typeof validateToc> | undefined
    let wantErr: unknown
    try { toc = validateToc(JSON.parse(json.toString('utf8')), { tocOffset: 1 << 30, footerKind: kind }) } catch (e) { wantErr = e }
    let got: ReturnType<typeof compactFromTocJson> | undefined
    let gotErr: unknown
    try { got = compactFromTocJson(json, footer) } catch (e) { gotErr = e }
    if (toc === undefined) {
      refused++
      // The same rule refuses it on both paths.
      return (gotErr as { rule?: string })?.rule === (wantErr as { rule?: string }).rule && (gotErr as Error).constructor === (wantErr as Error).constructor
    }
    accepted++
    if (got === undefined) throw gotErr
    const index = objectIndex(toc.entries, kind === 'zstd' ? 'zstd' : 'gzip')
    const tab = InodeTable.build(index)
    const problems: unknown[] = []
    const sink = { same: (a: unknown, b: unknown, _m: string) => { if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(a) } }
    compare(sink, index, tab, got.index, probes)
    compare(sink, index, tab, CompactIndex.fromBuffer(Buffer.from(got.index.bytes())), probes)
    if (got.tocDigest !== sha256Digest(json)) problems.push('digest')
    if (problems.length > 0) console.error(JSON.stringify(problems).slice(0, 2000))
    return problems.length === 0
  }), { numRuns: 300 })
  t.ok(accepted >= 50, `${accepted} valid random TOCs compared, ${refused} refused by the same rule`)
})

t.test('streaming build: a hostile or damaged TOC is a typed error; a wrong TOC is a digest mismatch first', async (t) => {
  const footer = { kind: 'estargz' as const, size: 51, tocOffset: 1000 }
  const ok = serializeToc([{ name: 'a', type: 'reg', size: 3, offset: 10, chunkDigest: DIGEST(1) }])
  t.equal(compactFromTocJson(ok, footer).index.payloadCount, 1)
  const bad = (entries: TocEntry[]): Buffer => serializeToc(entries)
  t.throws(() => compactFromTocJson(bad([{ name: '../x', type: 'reg' }]), footer), { code: 'ERR_TOC_INVALID', rule: 'name-escape' })
  t.throws(() => compactFromTocJson(bad([{ name: 'a', type: 'reg', size: 3, offset: 2000, chunkDigest: DIGEST(1) }]), footer), { code: 'ERR_TOC_INVALID', rule: 'offset-range' })
  t.throws(() => compactFromTocJson(bad([{ name: 'a', type: 'hardlink', linkName: 'nope' }]), footer), { code: 'ERR_TOC_INVALID', rule: 'hardlink-target' })
  t.throws(() => compactFromTocJson(bad([{ name: 'a', type: 'dir' }, { name: './a', type: 'dir' }]), footer), { code: 'ERR_TOC_INVALID', rule: 'duplicate-name' })
  t.throws(() => compactFromTocJson(bad([{ name: 'a', type: 'reg', size: 3, offset: 10, chunkDigest: DIGEST(1) }, { name: 'b', type: 'reg', size: 4, offset: 20, chunkDigest: DIGEST(1) }]), footer), { code: 'ERR_TOC_INVALID', rule: 'digest-two-sizes' })
  t.throws(() => compactFromTocJson(Buffer.from('{"version": 2, "entries": []}'), footer), { code: 'ERR_TOC_INVALID', rule: 'version' })
  t.throws(() => compactFromTocJson(Buffer.from('{"version": 1, "entries": [{"name": "a", '), footer), { code: 'ERR_TOC_INVALID' })
  t.throws(() => compactFromTocJson(ok, footer, { maxEntries: 0 }), { code: 'ERR_LIMIT_EXCEEDED' })
  // Malformed AND not the expected TOC: reported as the digest mismatch.
  t.throws(() => compactFromTocJson(Buffer.from('{"version": 1, "entries": [{"name": "../x", "type": "reg"}]}'), footer, {}, sha256Digest(ok)), { code: 'ERR_TOC_DIGEST_MISMATCH' })
  t.throws(() => compactFromTocJson(Buffer.from('{"version": 1, "entries": [{"name": "../x", "type": "reg"}]}'), footer), { code: 'ERR_TOC_INVALID', rule: 'name-escape' })
})

t.test('streaming build: hardlink targets are cleaned like names ("./a", as bsdtar and ctr-remote write them)', async (t) => {
  // Regression (CI run 2026-12-01): the validator cleans a hardlink's target in its finish(), after
  // the columns had copied the raw "./…" target, so the link resolved to nothing and read empty.
  const footer = { kind: 'estargz' as const, size: 51, tocOffset: 1000 }
  const json = serializeToc([
    { name: './data/', type: 'dir', mode: 0o755 },
    { name: './data/hello.txt', type: 'reg', mode: 0o644, size: 30, offset: 10, chunkDigest: DIGEST(1) },
    { name: './etc/hello.txt', type: 'hardlink', mode: 0o644, linkName: './data/hello.txt' },
    { name: '/etc/abs.txt', type: 'hardlink', mode: 0o644, linkName: '/data/hello.txt' },
  ])
  const { index } = compactFromTocJson(json, footer)
  const target = index.lookup('data/hello.txt')
  for (const name of ['etc/hello.txt', 'etc/abs.txt']) {
    const s = index.lookup(name)
    t.ok(s >= 0, `${name} is in the index`)
    t.equal(index.primary(s), target, `${name} is the same inode as its target`)
    t.equal(index.size(s), 30, `${name} has its target's size`)
    t.equal(index.chunks(name).length, 1, `${name} maps its target's chunk`)
  }
})
