/**
 * tar / tar.gz layer → eStargz blob.
 *
 * Layout written (see types.ts): for each entry, its tar header goes into the open gzip member;
 * each chunk of a regular file's payload starts a new member (the TOC entry's `offset` is where
 * that member starts); the payload padding and the following headers stay in the last chunk's
 * member. Then a member with the `stargz.index.json` tar entry and the end-of-archive blocks,
 * then the footer.
 *
 * TOC entries follow the reference writer (containerd/stargz-snapshotter estargz.Writer):
 * names are the tar names as they are ("./x", "/x", "/" for the root: not cleaned; readers clean
 * them, see toc-validate.ts normaliseName), userName/groupName only
 * when they differ from the last name seen for that uid/gid, `chunkSize` on every chunk except a
 * file's last partial one, zero-size files carry the digest of no bytes and no offset.
 *
 * Input is spooled to a temporary file first: prioritized files may come anywhere in the input,
 * and a later entry with the same name replaces an earlier one (as in the reference).
 */
import { createHash } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { InvalidArgumentError, TocError } from '../errors.js'
import { decompressLayer, type ByteInput } from '../tar/decompress.js'
import { emptyHeader, type TarHeader } from '../tar/header.js'
import { readTar } from '../tar/reader.js'
import { encodeHeader, endOfArchive, paddingFor } from '../tar/writer.js'
import { orderEntries } from './entry-order.js'
import { writeFooter } from './footer-writer.js'
import { GzipMemberPool } from './gzip-members.js'
import { MemberSink } from './member-sink.js'
import { Spool } from './spool.js'
import { zstdCompressFrame } from './zstd-codec.js'
import { skippableFrame, zstdFooterBytes, SKIPPABLE_HEADER_SIZE } from './zstd-format.js'
import { externalTocFooterBytes } from './external-toc.js'
import { gzipSync } from 'node:zlib'
import { formatModtime, serializeToc } from './toc-json.js'
import { normaliseName } from './toc-validate.js'
import {
  LANDMARK_CONTENTS, NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME, type TocEntry, type TocEntryType,
} from './types.js'

export interface ConvertOptions {
  /** Bytes per chunk of a regular file; default 4 MiB. */
  chunkSize?: number
  /** Paths to put first, in this order (cleaned like the reference: "/a", "./a", "a" are the same). */
  prioritizedFiles?: string[]
  /** gzip level 0..9, default 6; with zstdChunked a zstd level 1..22, default 3. */
  compressionLevel?: number
  /**
   * Write zstd:chunked (zstd frames, TOC in a skippable frame, zstd:chunked footer; layout in
   * zstd-format.ts) instead of gzip eStargz. The blob is then a .tar.zst.
   */
  zstdChunked?: boolean
  /**
   * Leave the TOC out of the blob (the reference's external-TOC mode, external-toc.ts): the blob
   * ends with the end-of-archive member and the external-TOC footer, and the TOC member is
   * returned in `ConvertResult.externalToc` for the caller to store as its own blob.
   */
  externalToc?: boolean
  /** Write the 47-byte legacy stargz footer instead of the eStargz one. */
  legacyFooter?: boolean
  /** Compression worker threads; default min(2, available cores). */
  concurrency?: number
  /** Told about recoverable oddities, e.g. a prioritized file that is not in the layer. */
  onWarning?: (message: string) => void
  /** Where the spool file goes; default os.tmpdir(). */
  tmpDir?: string
}

export interface ConvertResult {
  /** sha256 of the blob written. */
  digest: string
  /** sha256 of the uncompressed tar stream (TOC entry and end blocks included). */
  diffID: string
  /** sha256 of the TOC JSON bytes. */
  tocDigest: string
  /** Blob size in bytes. */
  size: number
  /** Uncompressed tar stream size in bytes. */
  uncompressedSize: number
  /** Number of TOC entries (chunk entries included). */
  entries: number
  /** Prioritized paths that matched nothing in the layer. */
  missingPrioritizedFiles: string[]
  /** zstd:chunked only: the values of the two io.containers.zstd-chunked.* annotations. */
  zstdChunked?: { manifestChecksum: string; manifestPosition: string }
  /** externalToc only: the TOC blob (gzip member holding the stargz.index.json tar entry). */
  externalToc?: Buffer
}

export const DEFAULT_CHUNK_SIZE = 4 << 20
const READ_PIECE = 4 << 20
const EMPTY_SHA256 = 'sha256:' + createHash('sha256').digest('hex')

interface LayerEntry {
  header: TarHeader
  cleanName: string
  isHardlink: boolean
  linkname: string
  /** Offset of the payload in the spool; -1 for the synthetic landmark. */
  spoolOffset: number
  removed: boolean
}

const TOC_TYPES: Record<TarHeader['typeflag'], TocEntryType> = {
  '0': 'reg', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo',
}

function checkInt(v: number | undefined, name: string, min: number, max: number): void {
  if (v === undefined) return
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new InvalidArgumentError(`convert: ${name} must be an integer in [${min}, ${max}], got ${v}`)
}

/**
 * The name every reader will use for a tar name, refusing what a reader would refuse (a ".." above
 * the root, a NUL): the blob we write must open with our own reader, and dedupe and ordering must
 * key on the same name the reader sees, so "./a" then "/a" is one file replaced, not two.
 */
function readerName(raw: string, what: string): string {
  try {
    return normaliseName(raw, Number.MAX_SAFE_INTEGER)
  } catch (e) {
    if (e instanceof TocError) throw new InvalidArgumentError(`convert: tar ${what} ${JSON.stringify(raw)} is not a safe layer path: ${e.message}`, { cause: e })
    throw e
  }
}

function landmark(name: string): LayerEntry {
  const header = emptyHeader(name, '0')
  header.size = 1
  return { header, cleanName: name, isHardlink: false, linkname: '', spoolOffset: -1, removed: false }
}

/**
 * Converts a tar (or tar.gz) layer read from `input` into an eStargz blob written to `output`.
 * `output` is ended when the blob is complete.
 */
export async function convertLayer(input: ByteInput, output: NodeJS.WritableStream, opts: ConvertOptions = {}): Promise<ConvertResult> {
  checkInt(opts.chunkSize, 'chunkSize', 1, 2 ** 31 - 1)
  checkInt(opts.compressionLevel, 'compressionLevel', opts.zstdChunked ? 1 : 0, opts.zstdChunked ? 22 : 9)
  checkInt(opts.concurrency, 'concurrency', 1, 64)
  if (opts.zstdChunked && (opts.externalToc || opts.legacyFooter)) throw new InvalidArgumentError('convert: zstdChunked cannot be combined with externalToc or legacyFooter')
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE
  const level = opts.compressionLevel ?? (opts.zstdChunked ? 3 : 6)
  const workers = opts.concurrency ?? Math.max(1, Math.min(2, availableParallelism()))

  const spool = await Spool.create(opts.tmpDir)
  let pool: GzipMemberPool | undefined
  try {
    // Pass 1: parse the input, keep headers in memory and payloads in the spool.
    const entries: LayerEntry[] = []
    const byName = new Map<string, LayerEntry>()
    for await (const e of readTar(decompressLayer(input))) {
      const cleanName = readerName(e.header.name, 'entry')
      if (e.header.typeflag === '1') readerName(e.header.linkname, `hardlink target of ${JSON.stringify(e.header.name)}:`)
      // A layer converted twice must not carry two TOCs or landmarks (as the reference).
      if (cleanName === TOC_TAR_NAME || cleanName === PREFETCH_LANDMARK || cleanName === NO_PREFETCH_LANDMARK) continue
      const spoolOffset = await spool.append(e.body, e.header.size, e.header.name)
      const entry: LayerEntry = { header: e.header, cleanName, isHardlink: e.header.typeflag === '1', linkname: e.header.linkname, spoolOffset, removed: false }
      const prev = byName.get(cleanName)
      if (prev) prev.removed = true
      byName.set(cleanName, entry)
      entries.push(entry)
    }
    await spool.flush()
    const live = entries.filter((e) => !e.removed)
    const prioritizedFiles = opts.prioritizedFiles ?? []
    const { prioritized, rest, missing } = orderEntries(live, prioritizedFiles)
    for (const m of missing) opts.onWarning?.(`prioritized file ${JSON.stringify(m)} is not in the layer; ignored`)
    const ordered = [...prioritized, landmark(prioritizedFiles.length > 0 ? PREFETCH_LANDMARK : NO_PREFETCH_LANDMARK), ...rest]

    // Pass 2: emit tar + gzip members.
    pool = new GzipMemberPool(level, workers, opts.zstdChunked ? 'zstd' : 'gzip')
    const sink = new MemberSink(pool, output, workers * 2 + 1)
    const toc: TocEntry[] = []
    const lastUname = new Map<number, string>()
    const lastGname = new Map<number, string>()
    const nameIfChanged = (m: Map<number, string>, id: number, name: string): string | undefined => {
      if (name === '' || m.get(id) === name) return undefined
      m.set(id, name)
      return name
    }

    for (const e of ordered) {
      const h = e.header
      const xattrs: Record<string, string> = {}
      for (const [k, v] of h.xattrs) xattrs[k] = v.toString('base64')
      const type = TOC_TYPES[h.typeflag]
      const ent: TocEntry = {
        name: h.name,
        type,
        ...(type === 'reg' ? { size: h.size } : {}),
        modtime: formatModtime(h.mtime, h.mtimeNsec),
        ...(type === 'hardlink' || type === 'symlink' ? { linkName: h.linkname } : {}),
        mode: h.mode,
        uid: h.uid,
        gid: h.gid,
      }
      const un = nameIfChanged(lastUname, h.uid, h.uname)
      if (un !== undefined) ent.userName = un
      const gn = nameIfChanged(lastGname, h.gid, h.gname)
      if (gn !== undefined) ent.groupName = gn
      if (type === 'char' || type === 'block') { ent.devMajor = h.devmajor; ent.devMinor = h.devminor }
      if (Object.keys(xattrs).length > 0) ent.xattrs = xattrs

      sink.write(encodeHeader(h))
      if (type !== 'reg' || h.size === 0) {
        if (type === 'reg') ent.digest = EMPTY_SHA256
        toc.push(ent)
        continue
      }
      const multi = h.size > chunkSize
      const fileHash = multi ? createHash('sha256') : undefined
      let chunkEnt: TocEntry = ent
      for (let written = 0; written < h.size;) {
        const n = Math.min(chunkSize, h.size - written)
        const target = chunkEnt
        if (n === chunkSize) target.chunkSize = n
        target.chunkOffset = written
        await sink.startMember(n, {
          onOffset: (o) => { target.offset = o },
          onPrefixDigest: (d) => {
            target.chunkDigest = d
            if (!multi) ent.digest = d
          },
        })
        for (let done = 0; done < n;) {
          const len = Math.min(READ_PIECE, n - done)
          const data = e.spoolOffset < 0 ? Buffer.from([LANDMARK_CONTENTS]) : await spool.read(e.spoolOffset + written + done, len)
          sink.write(data)
          fileHash?.update(data)
          done += len
        }
        toc.push(target)
        written += n
        chunkEnt = { name: h.name, type: 'chunk' }
      }
      if (fileHash) ent.digest = 'sha256:' + fileHash.digest('hex')
      const pad = paddingFor(h.size)
      if (pad > 0) sink.write(Buffer.alloc(pad))
    }
    await sink.flushAll()

    const tocJson = serializeToc(toc)
    const tocDigest = 'sha256:' + createHash('sha256').update(tocJson).digest('hex')
    if (opts.zstdChunked) {
      // zstd:chunked: the end-of-archive blocks in a frame of their own, then the bare TOC JSON
      // in one zstd frame inside a skippable frame, then the footer (zstd-format.ts). Skippable
      // frames are not tar data: diffID and uncompressed size cover the tar stream alone.
      await sink.startMember(0, {})
      sink.write(endOfArchive())
      await sink.flushAll()
      const frame = zstdCompressFrame(tocJson, level)
      const tocOffset = sink.compressedSize + SKIPPABLE_HEADER_SIZE
      await sink.writeRaw(skippableFrame(frame))
      await sink.writeRaw(zstdFooterBytes(tocOffset, frame.length, tocJson.length))
      await endOutput(output)
      return {
        digest: sink.digest, diffID: sink.diffID, tocDigest, size: sink.compressedSize, uncompressedSize: sink.uncompressedSize,
        entries: toc.length, missingPrioritizedFiles: missing,
        zstdChunked: {
          manifestChecksum: 'sha256:' + createHash('sha256').update(frame).digest('hex'),
          manifestPosition: `${tocOffset}:${frame.length}:${tocJson.length}:1`,
        },
      }
    }
    if (opts.externalToc) {
      // The end-of-archive blocks in the blob, so the blob alone is a complete tar.gz; the TOC
      // member goes to the caller. diffID covers the blob's tar stream, TOC excluded.
      await sink.startMember(0, {})
      sink.write(endOfArchive())
      await sink.flushAll()
      await sink.writeRaw(externalTocFooterBytes())
      await endOutput(output)
      const tocTar = emptyHeader(TOC_TAR_NAME, '0')
      tocTar.mode = 0o644
      tocTar.size = tocJson.length
      const tocBlob = gzipSync(Buffer.concat([encodeHeader(tocTar), tocJson, Buffer.alloc(paddingFor(tocJson.length)), endOfArchive()]), { level })
      tocBlob[9] = 0xff // OS unknown, as the members (Go's compress/gzip)
      return {
        digest: sink.digest, diffID: sink.diffID, tocDigest, size: sink.compressedSize, uncompressedSize: sink.uncompressedSize,
        entries: toc.length, missingPrioritizedFiles: missing, externalToc: tocBlob,
      }
    }
    // The TOC member, then the footer.
    const tocOffset = sink.compressedSize
    const tocHeader = emptyHeader(TOC_TAR_NAME, '0')
    tocHeader.mode = 0o644
    tocHeader.size = tocJson.length
    await sink.startMember(0, {})
    sink.write(encodeHeader(tocHeader))
    sink.write(tocJson)
    sink.write(Buffer.alloc(paddingFor(tocJson.length)))
    sink.write(endOfArchive())
    await sink.flushAll()
    await sink.writeRaw(writeFooter(tocOffset, opts.legacyFooter ? 'legacy' : 'estargz'))
    await endOutput(output)
    return {
      digest: sink.digest,
      diffID: sink.diffID,
      tocDigest,
      size: sink.compressedSize,
      uncompressedSize: sink.uncompressedSize,
      entries: toc.length,
      missingPrioritizedFiles: missing,
    }
  } finally {
    await pool?.close()
    await spool.close()
  }
}

function endOutput(output: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: unknown): void => { output.off('finish', onFinish); reject(e) }
    const onFinish = (): void => { output.off('error', onError); resolve() }
    output.once('error', onError)
    output.once('finish', onFinish)
    output.end()
  })
}
