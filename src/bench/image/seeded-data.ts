/**
 * Deterministic pseudo-random content for generated benchmark layers: the same seed gives the same
 * bytes on every machine and Node version.
 *
 * - `Prng`: sfc32 (a small, fast, well-tested 32-bit generator) seeded from sha256(seed); drives
 *   the shape of a tree (how many files, their sizes, which kind of block comes next).
 * - `keystream`: AES-128-CTR over zeros with a key from sha256(seed) — bulk random bytes at
 *   ~0.5 GB/s through OpenSSL, where a JS generator would take several seconds per GB.
 * - Block kinds give the data a realistic mix of compressibility: "weights" (fp16-like: random low
 *   byte, high byte from a narrow exponent range; gzip keeps ~80%), "sparse" (mostly zeros; ~20%),
 *   "noise" (incompressible), and "text" (Python-like source; ~25–30%).
 */
import { createCipheriv, createHash, type Cipher } from 'node:crypto'

export class Prng {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: string) {
    const h = createHash('sha256').update(seed).digest()
    this.#a = h.readUInt32LE(0)
    this.#b = h.readUInt32LE(4)
    this.#c = h.readUInt32LE(8)
    this.#d = h.readUInt32LE(12)
    for (let i = 0; i < 12; i++) this.u32()
  }

  /** sfc32: uniform in [0, 2^32). */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0
    this.#d = (this.#d + 1) | 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) | 0
    this.#c = (this.#c << 21) | (this.#c >>> 11)
    this.#c = (this.#c + t) | 0
    return t >>> 0
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1))
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)] as T
  }
}

/** Random bytes from AES-128-CTR keyed by `seed`. */
export class Keystream {
  readonly #cipher: Cipher
  #zeros = Buffer.alloc(0)

  constructor(seed: string) {
    const h = createHash('sha256').update(`keystream:${seed}`).digest()
    this.#cipher = createCipheriv('aes-128-ctr', h.subarray(0, 16), h.subarray(16, 32))
  }

  bytes(n: number): Buffer {
    if (this.#zeros.length < n) this.#zeros = Buffer.alloc(n)
    return this.#cipher.update(this.#zeros.subarray(0, n))
  }
}

export type BlockKind = 'weights' | 'sparse' | 'noise'

/** Fill one block of binary data of the given kind from `ks`. */
export function binaryBlock(kind: BlockKind, size: number, ks: Keystream): Buffer {
  const b = ks.bytes(size)
  if (kind === 'weights') {
    // Little-endian fp16-ish: low byte as is; high byte = sign | exponent 0x38..0x3f.
    for (let i = 1; i < size; i += 2) {
      const v = b[i] as number
      b[i] = (v & 0x80) | 0x38 | (v & 0x07)
    }
  } else if (kind === 'sparse') {
    // One byte in eight survives, the rest are zeros (activations, padded arrays, embeddings).
    for (let i = 0; i < size; i++) if (((b[i] as number) & 0x07) !== 0) b[i] = 0
  }
  return b
}

export interface BinaryMix { weights: number; sparse: number; noise: number }

/**
 * The content of a binary file of `size` bytes, as a lazy sequence of blocks whose kinds are drawn
 * from `mix` (weights must add up to 1), so that a 120 MiB file never sits in memory whole.
 */
export function* binaryFile(seed: string, size: number, mix: BinaryMix, blockSize = 64 * 1024): Generator<Buffer> {
  const prng = new Prng(`mix:${seed}`)
  const ks = new Keystream(seed)
  for (let off = 0; off < size; off += blockSize) {
    const n = Math.min(blockSize, size - off)
    const r = prng.float()
    const kind: BlockKind = r < mix.weights ? 'weights' : r < mix.weights + mix.sparse ? 'sparse' : 'noise'
    yield binaryBlock(kind, n, ks)
  }
}

const WORDS = [
  'def', 'return', 'self', 'import', 'from', 'class', 'if', 'else', 'elif', 'for', 'in', 'while', 'with', 'as',
  'None', 'True', 'False', 'and', 'or', 'not', 'is', 'lambda', 'yield', 'try', 'except', 'raise', 'pass',
  'data', 'value', 'result', 'config', 'items', 'index', 'name', 'path', 'buffer', 'offset', 'length', 'layer',
  'tensor', 'shape', 'dtype', 'weight', 'bias', 'module', 'forward', 'batch', 'size', 'cache', 'token', 'model',
  '=', '==', '+', '-', '*', '(', ')', '[', ']', ':', ',', '.', '0', '1', '2', '"', "'", '#', 'np', 'os', 'sys',
] as const

/** Python-looking text of exactly `size` bytes. */
export function textFile(seed: string, size: number): Buffer {
  const prng = new Prng(`text:${seed}`)
  const parts: string[] = []
  let len = 0
  while (len < size) {
    const indent = '    '.repeat(prng.int(0, 3))
    let line = indent
    const words = prng.int(2, 12)
    for (let i = 0; i < words; i++) line += (i ? ' ' : '') + prng.pick(WORDS)
    line += '\n'
    parts.push(line)
    len += line.length
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, size)
}
