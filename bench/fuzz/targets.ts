/**
 * Fuzz targets: each builds valid seed inputs once, then runs one mutated case per call. A case
 * passes when it returns or throws the module's documented error (a StargzError subclass; for
 * multipart/byteranges also its MultipartError); anything else is a crash. Invariants checked on
 * success throw a plain Error, so a violated one counts as a crash too.
 */
import { gzipSync } from 'node:zlib'
import { Writable } from 'node:stream'
import { StargzError, InvalidArgumentError } from '../../src/errors.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { convertLayer } from '../../src/estargz/writer.js'
import { writeFooter } from '../../src/estargz/footer-writer.js'
import { parseFooter } from '../../src/estargz/footer.js'
import { inlineDecoder } from '../../src/reader/inline-decoder.js'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { FOOTER_SIZE, TOC_TAR_NAME, type RangeSource } from '../../src/estargz/types.js'
import { ChunkReader } from '../../src/reader/chunk-reader.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { emptyHeader, type EntryType } from '../../src/tar/header.js'
import { encodeHeader, endOfArchive, paddingFor } from '../../src/tar/writer.js'
import { readTar } from '../../src/tar/reader.js'
import { decompressLayer } from '../../src/tar/decompress.js'
import { MultipartError, multipartBoundary, parseContentRange, parseMultipartByteranges } from '../../src/registry/multipart.js'
import { endpointsFromHostsToml } from '../../src/registry/hosts.js'
import { parseFilters } from '../../src/snapshot/filter.js'
import { isRemote, remoteLayerFromLabels, validateLabels, STARGZ_DIGEST_LABEL, STARGZ_REFERENCE_LABEL, STARGZ_LAYERS_LABEL, TOC_DIGEST_LABEL, CRI_IMAGE_REF_LABEL, CRI_LAYER_DIGEST_LABEL, REMOTE_LABEL } from '../../src/snapshot/labels.js'
import { JSON_EDGE, mutateBytes, mutateString, type Rng } from './mutate.js'
import { externalTocTarget, zstdChunkedTarget } from './targets-zstd.js'
import { gzindexTarget } from './targets-gzindex.js'

export interface Target {
  name: string
  /** Modules under test, for the report. */
  covers: string
  setup(): Promise<void>
  run(rng: Rng): Promise<void>
  expected(e: unknown): boolean
}

const typed = (e: unknown): boolean => e instanceof StargzError

// ---- shared builders --------------------------------------------------------------------------

interface TarSpec { name: string; type?: EntryType; content?: Buffer; linkname?: string; xattrs?: Record<string, string>; mode?: number }

function buildTar(entries: TarSpec[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const h = emptyHeader(e.name, e.type ?? '0')
    h.mode = e.mode ?? (e.type === '5' ? 0o755 : 0o644)
    h.mtime = 1_700_000_000
    h.linkname = e.linkname ?? ''
    const content = e.content ?? Buffer.alloc(0)
    h.size = h.typeflag === '0' ? content.length : 0
    for (const [k, v] of Object.entries(e.xattrs ?? {})) h.xattrs.set(k, Buffer.from(v))
    parts.push(encodeHeader(h))
    if (h.size > 0) parts.push(content, Buffer.alloc(paddingFor(h.size)))
  }
  parts.push(endOfArchive())
  return Buffer.concat(parts)
}

function pattern(n: number, salt: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + salt * 7 + (i >> 8)) & 0xff
  return b
}

const TAR_SEEDS: TarSpec[][] = [
  [{ name: 'etc/', type: '5' }, { name: 'etc/hosts', content: Buffer.from('127.0.0.1 localhost\n') }, { name: 'etc/link', type: '2', linkname: 'hosts' }],
  [{ name: 'bin/', type: '5' }, { name: 'bin/big', content: pattern(20_000, 1) }, { name: 'bin/hard', type: '1', linkname: 'bin/big' }, { name: 'bin/empty' }],
  [{ name: 'd/'.repeat(60) + 'long-name-' + 'x'.repeat(80), content: pattern(3000, 2) }, { name: 'x', content: Buffer.from('xattr'), xattrs: { 'user.a': 'b', 'security.capability': '\u0001\u0000' } }],
  [{ name: 'dev/', type: '5' }, { name: 'dev/null', type: '3' }, { name: 'fifo', type: '6' }, { name: 'f', content: pattern(600, 3), mode: 0o4755 }],
]

class Sink extends Writable {
  readonly parts: Buffer[] = []
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void { this.parts.push(c); cb() }
}

/** An in-memory blob as a RangeSource; out-of-range reads fail as RegistryBlob's do. */
class MemSource implements RangeSource {
  constructor(private readonly b: Buffer) {}
  get size(): number { return this.b.length }
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.b.length) {
      throw new InvalidArgumentError(`read of ${length} bytes at offset ${offset} is outside the blob (size ${this.b.length})`)
    }
    return Buffer.from(this.b.subarray(offset, offset + length))
  }
  async readRanges(ranges: ReadonlyArray<{ offset: number; length: number }>): Promise<Buffer[]> {
    return Promise.all(ranges.map((r) => this.read(r.offset, r.length)))
  }
}

// ---- footer, TOC and chunks -------------------------------------------------------------------

interface BlobSeed { blob: Buffer; tocOffset: number; toc: { version?: unknown; entries: Array<Record<string, unknown>> } }
const blobSeeds: BlobSeed[] = []

function tocMember(json: Buffer): Buffer {
  const h = emptyHeader(TOC_TAR_NAME, '0')
  h.size = json.length
  h.mode = 0o644
  return gzipSync(Buffer.concat([encodeHeader(h), json, Buffer.alloc(paddingFor(json.length)), endOfArchive()]), { level: 1 })
}

function mutateToc(rng: Rng, toc: BlobSeed['toc']): BlobSeed['toc'] {
  const t = structuredClone(toc)
  const ops = 1 + rng.int(3)
  const fields = ['name', 'type', 'size', 'offset', 'chunkOffset', 'chunkSize', 'chunkDigest', 'digest', 'linkName', 'mode', 'uid', 'gid', 'xattrs', 'innerOffset', 'modtime', 'devMajor']
  for (let k = 0; k < ops; k++) {
    const es = t.entries
    const r = rng.int(10)
    if (r === 0 && es.length) es.splice(rng.int(es.length), 1)
    else if (r === 1 && es.length) es.splice(rng.int(es.length + 1), 0, structuredClone(rng.pick(es)))
    else if (r === 2 && es.length > 1) { const a = rng.int(es.length); const b = rng.int(es.length); [es[a], es[b]] = [es[b] as Record<string, unknown>, es[a] as Record<string, unknown>] }
    else if (r === 3) t.version = rng.pick(JSON_EDGE)
    else if (es.length) {
      const e = rng.pick(es)
      const f = rng.pick(fields)
      const other = rng.pick(es)[f]
      if (rng.chance(0.1)) delete e[f]
      else if (rng.chance(0.3) && other !== undefined) e[f] = other
      else if (rng.chance(0.2) && typeof e[f] === 'number') e[f] = (e[f] as number) + rng.pick([-1, 1, -512, 512, 4096])
      else e[f] = rng.pick(JSON_EDGE)
    }
  }
  return t
}

export const estargzTarget: Target = {
  name: 'estargz',
  covers: 'footer, TOC, chunks (src/estargz, src/reader)',
  async setup() {
    for (const [i, spec] of TAR_SEEDS.entries()) {
      for (const legacyFooter of [false, true]) {
        const sink = new Sink()
        async function* input(): AsyncGenerator<Buffer> { yield buildTar(spec) }
        await convertLayer(input(), sink, { chunkSize: 4096 * (1 + (i % 2)), concurrency: 1, legacyFooter, compressionLevel: 1 })
        const blob = Buffer.concat(sink.parts)
        const footer = parseFooter(blob.subarray(blob.length - (legacyFooter ? 47 : FOOTER_SIZE)), blob.length)
        const reader = await EstargzReader.open(new MemSource(blob))
        blobSeeds.push({ blob, tocOffset: footer.tocOffset, toc: structuredClone(reader.toc) as unknown as BlobSeed['toc'] })
      }
    }
  },
  async run(rng) {
    const seed = rng.pick(blobSeeds)
    let blob: Buffer
    const mode = rng.int(3)
    if (mode === 0) {
      // Structured: a mutated TOC, re-packed with a valid gzip member and footer.
      const json = Buffer.from(JSON.stringify(mutateToc(rng, seed.toc)))
      blob = Buffer.concat([seed.blob.subarray(0, seed.tocOffset), tocMember(json), writeFooter(seed.tocOffset, rng.chance(0.2) ? 'legacy' : 'estargz')])
    } else if (mode === 1) {
      blob = mutateBytes(rng, seed.blob, { focusStart: seed.tocOffset, donor: rng.pick(blobSeeds).blob })
    } else {
      // Payload bytes: the TOC is intact, chunks are not.
      blob = Buffer.from(seed.blob)
      for (let k = 1 + rng.int(3); k > 0; k--) { const p = rng.int(seed.tocOffset); blob[p] = (blob[p] as number) ^ (1 << rng.int(8)) }
    }
    const src = new MemSource(blob)
    // The CLI's path (no cache) and a mount's (memory cache) over the same blob.
    const reader = await BlobReader.open(src, { limits: { maxTocBytes: 8 << 20, maxEntries: 10_000 }, decoder: inlineDecoder })
    const regs = [...reader.index.entries.values()].filter((e) => e.type === 'reg')
    const chunks = new ChunkReader({ reader: reader.meta, source: src, cache: new MemoryCache({ maxBytes: 1 << 20 }), decoder: inlineDecoder, readaheadBytes: 0 })
    for (let k = 0; k < Math.min(2, regs.length); k++) {
      const e = rng.pick(regs)
      const size = e.size ?? 0
      const off = rng.chance(0.2) ? rng.pick([0, size, size + 1, 2 ** 40]) : rng.int(size + 1)
      const len = rng.chance(0.2) ? rng.pick([0, 1, size, 2 ** 31]) : rng.int(size + 1)
      const want = Math.max(0, Math.min(size, off + len) - off)
      for (const read of [() => reader.readFile(e.name, off, len), () => chunks.read(e.name, off, len)]) {
        let got: Buffer
        try { got = await read() } catch (err) { if (typed(err)) continue; throw err }
        if (got.length !== want) throw new Error(`invariant: read of ${len} at ${off} of ${e.name} (size ${size}) returned ${got.length} bytes`)
      }
    }
    if (rng.chance(0.1)) await reader.verifyAll({ concurrency: 2 }).catch((err: unknown) => { if (!typed(err)) throw err })
  },
  expected: typed,
}

// ---- tar reader -------------------------------------------------------------------------------

const tarSeeds: Buffer[] = []
const gzSeeds: Buffer[] = []

const PAX_KEYS = ['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime', 'atime', 'ctime', 'charset', 'comment', 'hdrcharset', 'SCHILY.xattr.user.a', 'SCHILY.xattr.security.capability', 'SCHILY.acl.access', 'GNU.sparse.size', 'x']
const PAX_VALUES = ['', '0', '-1', '1', '511', '512', '99999999999999999999', '1e400', '1.5', '-1.5', '1700000000.123456789', '.', '..', '../../etc/passwd', '/abs', 'a\u0000b', 'x'.repeat(300), 'NaN', '0x10', ' 7', '7 ', '\u00e9']

/** A raw header block: the writer's, with a chosen typeflag and size (checksum recomputed). */
function rawHeader(name: string, typeflag: string, size: number): Buffer {
  const h = emptyHeader(name, '0')
  h.size = size
  h.mode = 0o644
  const b = encodeHeader(h).subarray(0, 512)
  b.write(typeflag, 156, 1, 'latin1')
  b.fill(0x20, 148, 156)
  let sum = 0
  for (const x of b) sum += x
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return b
}

/** PAX ('x'/'g') or GNU long-name ('L'/'K') metadata with chosen records, then one file entry. */
export function structuredTar(rng: Rng): Buffer {
  const parts: Buffer[] = []
  for (let k = 1 + rng.int(3); k > 0; k--) {
    const kind = rng.pick(['x', 'x', 'g', 'L', 'K'])
    let data: Buffer
    if (kind === 'L' || kind === 'K') data = Buffer.from(rng.pick(PAX_VALUES) + (rng.chance(0.5) ? '\0' : ''), 'utf8')
    else {
      const recs: Buffer[] = []
      for (let j = 1 + rng.int(4); j > 0; j--) {
        const body = ` ${rng.pick(PAX_KEYS)}=${rng.pick(PAX_VALUES)}\n`
        const n = Buffer.byteLength(body)
        let len = n + String(n).length
        if (String(len).length + n !== len) len = n + String(len).length
        const claimed = rng.chance(0.03) ? len + rng.pick([-2, -1, 1, 2, 1000]) : len
        recs.push(Buffer.from(`${claimed}${body}`, 'utf8'))
      }
      data = Buffer.concat(recs)
    }
    const declared = rng.chance(0.03) ? data.length + rng.pick([-1, 1, 512, 2 ** 21]) : data.length
    parts.push(rawHeader('././@PaxHeader', kind, Math.max(0, declared)), data, Buffer.alloc(paddingFor(data.length)))
  }
  const content = pattern(rng.int(2000), 5)
  parts.push(rawHeader('file', rng.pick(['0', '0', '1', '2', '5', '7', 'S', '\0']), content.length), content, Buffer.alloc(paddingFor(content.length)), endOfArchive())
  return Buffer.concat(parts)
}

export const tarTarget: Target = {
  name: 'tar',
  covers: 'tar reader and layer decompression (src/tar)',
  async setup() {
    for (const s of TAR_SEEDS) { const t = buildTar(s); tarSeeds.push(t); gzSeeds.push(gzipSync(t, { level: 1 })) }
  },
  async run(rng) {
    const gz = rng.chance(0.2)
    const structured = !gz && rng.chance(0.3)
    const seed = gz ? rng.pick(gzSeeds) : structured ? structuredTar(rng) : rng.pick(tarSeeds)
    const input = structured && rng.chance(0.5) ? seed : mutateBytes(rng, seed, { focusStart: rng.chance(0.5) ? 0 : undefined, donor: rng.pick(tarSeeds) })
    const piece = rng.pick([61, 512, 513, 4096, 1 << 20])
    async function* chunks(): AsyncGenerator<Buffer> { for (let i = 0; i < input.length; i += piece) yield input.subarray(i, i + piece) }
    let entries = 0
    for await (const e of readTar(gz ? decompressLayer(chunks()) : chunks())) {
      let n = 0
      if (rng.chance(0.8)) for await (const c of e.body) n += c.length
      else n = e.header.size
      if (n !== e.header.size) throw new Error(`invariant: body of ${JSON.stringify(e.header.name)} has ${n} bytes, header says ${e.header.size}`)
      if (++entries > 100_000) throw new Error('invariant: more entries than the input could hold')
    }
  },
  expected: typed,
}

// ---- multipart/byteranges ---------------------------------------------------------------------

const mpSeeds: Array<{ body: Buffer; boundary: string }> = []

export const multipartTarget: Target = {
  name: 'multipart',
  covers: 'multipart/byteranges, Content-Range (src/registry/multipart.ts)',
  async setup() {
    for (const [n, boundary] of [[1, 'b1'], [3, '3d6b6a416f9b5'], [5, 'THIS_STRING_SEPARATES']] as const) {
      const parts: Buffer[] = []
      let off = 0
      for (let i = 0; i < n; i++) {
        const data = pattern(10 + i * 37, i)
        // Part data that contains the boundary must not confuse the parser.
        data.write(`--${boundary}`, 3, 'latin1')
        parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${off}-${off + data.length - 1}/100000\r\n\r\n`, 'latin1'), data, Buffer.from('\r\n'))
        off += data.length + 100
      }
      parts.push(Buffer.from(`--${boundary}--\r\n`))
      mpSeeds.push({ body: Buffer.concat(parts), boundary })
    }
  },
  async run(rng) {
    const s = rng.pick(mpSeeds)
    const body = mutateBytes(rng, s.body)
    const boundary = rng.chance(0.1) ? mutateString(rng, s.boundary, ['-', '"', ';', ' ', '']) : s.boundary
    let refused: unknown
    try {
      for (const p of parseMultipartByteranges(body, boundary)) {
        if (p.data.length < 1 || p.data.byteOffset < body.byteOffset || p.data.byteOffset + p.data.length > body.byteOffset + body.length) {
          throw new Error('invariant: part data outside the body')
        }
      }
    } catch (e) { if (!(e instanceof MultipartError)) throw e; refused = e }
    const cr = parseContentRange(mutateString(rng, 'bytes 100-199/1000', ['-', '/', '*', ' ', '9', '0', 'e', '+', '.']))
    if (cr && (!(cr.end >= cr.start) || !Number.isFinite(cr.end))) throw new Error(`invariant: Content-Range ${JSON.stringify(cr)}`)
    multipartBoundary(mutateString(rng, `multipart/byteranges; boundary="${s.boundary}"`, [';', '=', '"', ' ', ',']))
    if (refused) throw refused
  },
  expected: (e) => typed(e) || e instanceof MultipartError,
}

// ---- hosts.toml -------------------------------------------------------------------------------

const HOSTS_SEEDS = [
  'server = "https://registry.example:5000"\ncapabilities = ["pull", "resolve", "push"]\nca = "ca.pem"\nskip_verify = false\n[header]\n  x-a = "1"\n  x-b = ["2", "3"]\n',
  'server = "http://127.0.0.1:5000"\n[host."http://127.0.0.1:6000"]\n  capabilities = ["pull", "resolve"]\n  override_path = true\n[host."https://mirror.example/v2/sub"]\n  client = [["c.pem", "k.pem"]]\n  [host."https://mirror.example/v2/sub".header]\n    authorization-hint = "v"\n',
  '[host."mirror.example"]\nca = ["a.pem", "b.pem"]\nclient = "c.pem"\n',
  'server = "registry-1.docker.io"\n',
]
const HOSTS_TOKENS = [
  '\n[host."http://x"]\n', '\n[host]\n', '\nserver = 1\n', '\ncapabilities = ["pull", "nope"]\n', '\ncapabilities = "pull"\n', '\nca = ["a.pem", 1]\n',
  '\nclient = [[]]\n', '\nclient = [["a", "b", "c"]]\n', '\nclient = [1]\n', '\n[header]\na = [1]\n', '\nheader = "x"\n', '\nserver = "ftp://x"\n',
  '\nserver = "http://[::1"\n', '\noverride_path = "yes"\n', '\nskip_verify = 1\n', '\nca = "missing.crt"\n', '"', '[', ']', '=', '{', '}', '\\u0000', '\\', '#', "'''", '"""',
  '\nhost = 5\n', '\n[host."h".header]\n', '\nhost."x" = 1\n',
]

export const hostsTarget: Target = {
  name: 'hosts.toml',
  covers: 'hosts.toml (src/registry/hosts.ts)',
  async setup() { /* seeds are constants */ },
  async run(rng) {
    let text = rng.pick(HOSTS_SEEDS)
    const ops = 1 + rng.int(4)
    for (let k = 0; k < ops; k++) {
      const p = rng.int(text.length + 1)
      if (rng.chance(0.5)) text = text.slice(0, p) + rng.pick(HOSTS_TOKENS) + text.slice(p)
      else text = mutateString(rng, text, ['"', '[', ']', '=', '.', ',', '\n', ' ', 'a', '1', 'h', '/', ':'])
    }
    const eps = await endpointsFromHostsToml(text, {
      file: 'hosts.toml', dir: '/certs.d/registry.example', apiHost: 'registry.example', defaultScheme: rng.chance(0.5) ? 'https' : 'http', insecure: rng.chance(0.2),
      readPem: async (p) => { if (/\.(pem|crt)$/.test(p) && !p.includes('missing')) return Buffer.from('PEM'); throw new Error(`ENOENT: ${p}`) },
    })
    const last = eps[eps.length - 1]
    if (!last || last.isMirror) throw new Error('invariant: the server endpoint is not last')
    for (const e of eps) if (e.base.protocol !== 'http:' && e.base.protocol !== 'https:') throw new Error(`invariant: endpoint ${e.base.href}`)
  },
  expected: typed,
}

// ---- filters and labels -----------------------------------------------------------------------

const FILTER_SEEDS = [
  'labels."containerd.io/snapshot.ref"==sha256:abc', 'kind==active,name~=^sha256', 'labels.a!=b', 'parent', 'name~=/a.b/,labels."x y"==z',
  'labels."containerd.io/gc.root"', 'name~="(?i)ABC"', 'kind==committed|kind==active',
]
const FILTER_ALPHABET = ['"', '\\', '.', ',', '=', '!', '~', '/', '|', ' ', '(', ')', '?', '*', '+', '[', ']', '{', '}', '^', '$', 'a', 'A', '0', '\t', '\u00e9']
const LABEL_KEYS = [STARGZ_REFERENCE_LABEL, STARGZ_DIGEST_LABEL, STARGZ_LAYERS_LABEL, TOC_DIGEST_LABEL, CRI_IMAGE_REF_LABEL, CRI_LAYER_DIGEST_LABEL, REMOTE_LABEL, 'a', '']

export const filtersTarget: Target = {
  name: 'filters+labels',
  covers: 'filters and labels (src/snapshot/filter.ts, labels.ts)',
  async setup() { /* seeds are constants */ },
  async run(rng) {
    const filters = Array.from({ length: 1 + rng.int(3) }, () => mutateString(rng, rng.pick(FILTER_SEEDS), FILTER_ALPHABET))
    const values: Record<string, string> = {}
    for (let k = 0; k < 4; k++) values[rng.pick(['kind', 'name', 'parent', 'labels.a', 'labels.x y', 'labels.containerd.io/snapshot.ref'])] = mutateString(rng, 'sha256:abcABC', FILTER_ALPHABET).slice(0, 64)
    let refused: unknown
    try {
      const f = parseFilters(filters)
      f.match((path) => values[path.join('.')])
    } catch (e) { if (!typed(e)) throw e; refused = e }
    const labels: Record<string, string> = {}
    for (let k = 0; k < 1 + rng.int(5); k++) {
      labels[rng.chance(0.2) ? mutateString(rng, rng.pick(LABEL_KEYS), FILTER_ALPHABET) : rng.pick(LABEL_KEYS)] = rng.chance(0.05) ? 'v'.repeat(5000) : mutateString(rng, 'ref,sha256:a, ,b', [',', ' ', ''])
    }
    try { validateLabels(labels) } catch (e) { if (!typed(e)) throw e }
    remoteLayerFromLabels(labels)
    isRemote(labels)
    if (refused) throw refused
  },
  expected: typed,
}

/**
 * Checks the harness itself (`--targets selftest`, not in the default run): about one case in
 * 2,000 spins for ever, one settles never, one throws a TypeError; the report must show them.
 */
export const selftestTarget: Target = {
  name: 'selftest',
  covers: 'the hang and crash detectors',
  async setup() { /* nothing */ },
  async run(rng) {
    const r = rng.int(2000)
    if (r === 0) for (;;) { /* a true infinite loop: only terminating the worker ends it */ }
    if (r === 1) await new Promise(() => undefined)
    if (r === 2) throw new TypeError('selftest crash')
  },
  expected: typed,
}

export const TARGETS: readonly Target[] = [estargzTarget, tarTarget, multipartTarget, hostsTarget, filtersTarget, zstdChunkedTarget, externalTocTarget, gzindexTarget]
export const ALL_TARGETS: readonly Target[] = [...TARGETS, selftestTarget]
