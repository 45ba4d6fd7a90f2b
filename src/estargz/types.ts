/**
 * eStargz wire format, as laid out in a layer blob:
 *
 *   [gzip member]* ......... tar headers and file payloads; every regular file's payload (or each
 *                            chunk of it) starts a fresh gzip member, so it inflates on its own
 *   [gzip member] .......... tar entry "stargz.index.json" (the TOC, JSON below) + tar EOF blocks
 *   [footer] ............... an empty gzip member whose header "extra" field holds the TOC offset
 *
 * The whole blob is still one valid tar.gz (gzip allows concatenated members).
 *
 * Footer, eStargz (51 bytes):
 *   0   1f 8b          gzip magic
 *   2   08             CM = deflate
 *   3   04             FLG = FEXTRA
 *   4   00 00 00 00    MTIME
 *   8   00             XFL
 *   9   ff             OS = unknown
 *   10  1a 00          XLEN = 26 (little endian)
 *   12  'S' 'G'        extra subfield id
 *   14  16 00          subfield length = 22
 *   16  %016x          TOC offset in lower-case hex (16 chars)
 *   32  "STARGZ"
 *   38  01 00 00 ff ff empty final stored deflate block
 *   43  00 00 00 00    CRC32 of nothing
 *   47  00 00 00 00    ISIZE = 0
 *
 * Footer, legacy stargz / CRFS (47 bytes): the same, but XLEN = 22 and the extra field is the
 * bare "%016xSTARGZ" with no subfield header.
 *
 * TOC JSON: {"version": 1, "entries": [TocEntry, ...]}
 */

export const TOC_TAR_NAME = 'stargz.index.json'
export const PREFETCH_LANDMARK = '.prefetch.landmark'
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark'
/** Content of the landmark files, as the reference writes them. */
export const LANDMARK_CONTENTS = 0x0f
export const FOOTER_SIZE = 51
export const LEGACY_FOOTER_SIZE = 47

/** Layer descriptor annotation carrying the TOC digest. */
export const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest'
/** Layer descriptor annotation carrying the uncompressed layer size. */
export const UNCOMPRESSED_SIZE_ANNOTATION = 'io.containers.estargz.uncompressed-size'

export type TocEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk'

/** One entry of stargz.index.json; field names are the wire names. */
export interface TocEntry {
  name: string
  type: TocEntryType
  /** Regular files: total file size (on the first entry of the file). */
  size?: number
  /** RFC 3339. */
  modtime?: string
  /** symlink target, or hardlink target path (TOC name of the target). */
  linkName?: string
  /** Permission and special bits (tar header mode). */
  mode?: number
  uid?: number
  gid?: number
  userName?: string
  groupName?: string
  devMajor?: number
  devMinor?: number
  /** Values base64-encoded (Go []byte JSON). */
  xattrs?: Record<string, string>
  /** sha256 of the whole file payload ("sha256:<hex>"), on reg entries. */
  digest?: string
  /** Compressed offset of the gzip member that starts with this entry's payload (chunk). */
  offset?: number
  /** Offset of this chunk within the file. */
  chunkOffset?: number
  /** Size of this chunk; 0/absent means "to the end of the file". */
  chunkSize?: number
  /** sha256 of this chunk's uncompressed bytes. */
  chunkDigest?: string
  /** Offset of the chunk inside its decoded member (reference ≥ 0.13, small-file packing). */
  innerOffset?: number
}

export interface Toc {
  version: number
  entries: TocEntry[]
}

/** 'zstd': zstd:chunked (layout in zstd-format.ts); 'external': TOC in its own blob (external-toc.ts). */
export type FooterKind = 'estargz' | 'legacy' | 'zstd' | 'external'

export interface Footer {
  kind: FooterKind
  size: number
  tocOffset: number
  /** zstd only: compressed TOC length, decoded TOC length, end of the payload frames. */
  tocLength?: number
  tocRawSize?: number
  payloadEnd?: number
}

/**
 * Random access to a blob: a local file, an HTTP blob on a registry, a test buffer.
 * `read` must return exactly `length` bytes or throw.
 */
export interface RangeSource {
  readonly size: number
  /**
   * How many of the blob's last bytes the source already holds in memory (a registry blob opened
   * with a suffix range); loadToc reads its footer guess from them instead of guessing 64 KiB.
   */
  readonly tailLength?: number
  read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer>
  close?(): Promise<void>
}

/** Bounds enforced while parsing a TOC from untrusted input. */
export interface TocLimits {
  maxTocBytes: number
  maxEntries: number
  maxNameBytes: number
  maxXattrs: number
  maxXattrBytes: number
  maxFileSize: number
}

export const DEFAULT_TOC_LIMITS: Readonly<TocLimits> = Object.freeze({
  maxTocBytes: 512 * 1024 * 1024,
  maxEntries: 4_000_000,
  maxNameBytes: 4096,
  maxXattrs: 1024,
  maxXattrBytes: 1024 * 1024,
  maxFileSize: 2 ** 50,
})
