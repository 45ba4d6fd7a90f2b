/**
 * zstd for the read and write paths, over zstd-napi (N-API binding built from the zstd sources it
 * bundles; chosen in bench/zstd-decode.ts, figures in bench/RESULTS.md).
 *
 * Decoding is bounded by what the TOC says: `decodePrefix` decodes through ZSTD_decompressStream
 * and stops at the chunk's size, so a frame that claims (or really holds) gigabytes costs no more
 * than the chunk; the buffer grows with the bytes really decoded, so a TOC that lies about a
 * chunk's size costs no more than the frames hold. The frame header's content size is never used
 * to size anything. A frame whose window is larger than 2^27 bytes is refused by zstd itself
 * (windowLogMax), which bounds the decoder's own memory.
 *
 * The decode loop is written once, as source text, because it runs in two places: here on the main
 * thread, and (before the decode worker became a compiled module, src/reader/decode-worker.ts, which
 * reaches this code through decodeMember) inside the decode workers' source string. A
 * second hand-written copy would be free to diverge.
 */
import { createRequire } from 'node:module'
import { StargzError } from '../errors.js'
import type { ChunkRef } from './toc-index.js'

const require = createRequire(import.meta.url)

/** Absolute path of zstd-napi's native binding, for workers that load it themselves. */
export const ZSTD_BINDING_PATH: string = require.resolve('zstd-napi/binding')

/**
 * Defines `makeZstdDecoder(binding)` → `{ decodePrefix(src, want) }`. `decodePrefix` returns a
 * Buffer of exactly `want` bytes, or a number (how many bytes the input held, less than `want`).
 * Damaged input throws the binding's error. Skippable frames and frame boundaries inside `src` are
 * handled by zstd's streaming decoder.
 */
export const ZSTD_DECODE_SOURCE = String.raw`
function makeZstdDecoder(binding) {
  const dctx = new binding.DCtx()
  dctx.setParameter(binding.DParameter.windowLogMax, 27)
  function decodePrefix(src, want) {
    // A previous call may have stopped in the middle of a frame.
    dctx.reset(binding.ResetDirective.sessionOnly)
    // The output grows with what really comes out (from 1 MiB, or 64x the input), never straight
    // to a size the TOC claims: a lying chunkSize costs only the bytes the frames really hold.
    let out = Buffer.allocUnsafe(Math.min(want, Math.max(1 << 20, src.length * 64)))
    let produced = 0
    let consumed = 0
    while (produced < want && consumed < src.length) {
      if (produced === out.length) {
        const next = Buffer.allocUnsafe(Math.min(want, out.length * 2))
        out.copy(next, 0, 0, produced)
        out = next
      }
      const r = dctx.decompressStream(out.subarray(produced), src.subarray(consumed))
      produced += r[1]
      consumed += r[2]
      if (r[1] === 0 && r[2] === 0) break
    }
    return produced === want ? out : produced
  }
  return { decodePrefix }
}
`

interface ZstdDecoder { decodePrefix(src: Uint8Array, want: number): Buffer | number }
interface ZstdBinding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number }
  compressBound(n: number): number
}

let decoder: ZstdDecoder | undefined
let binding: ZstdBinding | undefined
// One compression context, reused: a context per frame holds megabytes of native memory that the
// GC frees late (it does not see it), so RSS climbed by a GiB over 100k small TOC frames.
let cctx: { compress(dst: Uint8Array, src: Uint8Array, level: number): number } | undefined

function loadBinding(): ZstdBinding {
  binding ??= require(ZSTD_BINDING_PATH) as ZstdBinding
  return binding
}

function mainDecoder(): ZstdDecoder {
  if (!decoder) {
    // Function constructor, not eval of arbitrary input: the text is ZSTD_DECODE_SOURCE above.
    const make = new Function('binding', 'Buffer', `${ZSTD_DECODE_SOURCE}\nreturn makeZstdDecoder(binding)`) as (b: unknown, buf: typeof Buffer) => ZstdDecoder
    decoder = make(loadBinding(), Buffer)
  }
  return decoder
}

/**
 * Decode the first `want` bytes of zstd data; throws when the data is damaged or holds fewer.
 * `what` names the thing for the message ("TOC at offset 7808").
 */
export function zstdDecodePrefix(src: Uint8Array, want: number, what: string): Buffer {
  let r: Buffer | number
  try {
    r = mainDecoder().decodePrefix(src, want)
  } catch (e) {
    throw new StargzError('ERR_FETCH', `zstd data of ${what} does not decode: ${(e as Error).message}`, { cause: e })
  }
  if (typeof r === 'number') throw new StargzError('ERR_FETCH', `zstd data of ${what} holds ${r} bytes, need ${want}`)
  return r
}

/** Decode a chunk's frame(s) into exactly its bytes (not yet verified). */
export function zstdDecodeChunk(member: Uint8Array, ref: ChunkRef): Buffer {
  return zstdDecodePrefix(member, ref.chunkSize, `${JSON.stringify(ref.name)} at blob offset ${ref.compressedOffset}`)
}

/** One complete zstd frame holding `data` (content size in the header, no checksum). */
export function zstdCompressFrame(data: Uint8Array, level: number): Buffer {
  const b = loadBinding()
  const out = Buffer.allocUnsafe(b.compressBound(data.length))
  cctx ??= new b.CCtx()
  const n = cctx.compress(out, data, level)
  return out.subarray(0, n)
}
