/**
 * Deterministic randomness and byte mutators for the fuzz bench. Case i of target T with seed S
 * is always the same input, so any finding is replayed with `--target T --case i --seed S`.
 */

export class Rng {
  private s: number
  constructor(seed: number) { this.s = seed >>> 0 || 0x9e3779b9 }
  /** mulberry32: small, fast, good enough to spread mutations. */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  int(n: number): number { return Math.floor(this.next() * n) }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)] as T }
  chance(p: number): boolean { return this.next() < p }
}

export function caseRng(seed: number, target: string, i: number): Rng {
  let h = 2166136261 ^ seed
  for (const c of target) h = Math.imul(h ^ c.charCodeAt(0), 16777619)
  h = Math.imul(h ^ i, 2246822519) ^ Math.imul(i >>> 16, 3266489917)
  return new Rng(h >>> 0)
}

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x30, 0x37, 0x39, 0x20, 0x0a, 0x0d, 0x22, 0x2d, 0x2f, 0x3a, 0x5c]

/**
 * 1..maxOps mutations of `input`, positions biased to [focusStart, end) when given (the footer and
 * TOC of a blob, the header blocks of a tar): bit flips, interesting bytes, inserted, deleted
 * and duplicated runs, truncation, and a splice from `donor`.
 */
export function mutateBytes(rng: Rng, input: Buffer, opts: { focusStart?: number; maxOps?: number; donor?: Buffer } = {}): Buffer {
  let b = Buffer.from(input)
  const ops = 1 + rng.int(opts.maxOps ?? 6)
  for (let k = 0; k < ops; k++) {
    const focus = opts.focusStart !== undefined && opts.focusStart < b.length && rng.chance(0.7) ? opts.focusStart : 0
    const pos = (): number => (b.length === 0 ? 0 : focus + rng.int(Math.max(1, b.length - focus)))
    switch (rng.int(9)) {
      case 0: if (b.length) { const p = pos(); b[p] = (b[p] as number) ^ (1 << rng.int(8)) } break
      case 1: if (b.length) b[pos()] = rng.pick(INTERESTING); break
      case 2: if (b.length) b[pos()] = rng.int(256); break
      case 3: { const p = pos(); const ins = Buffer.alloc(1 + rng.int(16)); for (let j = 0; j < ins.length; j++) ins[j] = rng.chance(0.5) ? rng.pick(INTERESTING) : rng.int(256); b = Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]); break }
      case 4: { const p = pos(); const n = 1 + rng.int(64); b = Buffer.concat([b.subarray(0, p), b.subarray(p + n)]); break }
      case 5: { const p = pos(); const n = 1 + rng.int(128); b = Buffer.concat([b.subarray(0, p), b.subarray(p, p + n), b.subarray(p)]); break }
      case 6: b = b.subarray(0, rng.int(b.length + 1)); break
      case 7: if (opts.donor && opts.donor.length) { const p = pos(); const q = rng.int(opts.donor.length); const n = 1 + rng.int(256); b = Buffer.concat([b.subarray(0, p), opts.donor.subarray(q, q + n), b.subarray(p + n)]) } break
      default: if (b.length >= 4) { const p = Math.min(pos(), b.length - 4); b.writeUInt32LE(rng.pick([0, 0xffffffff, 0x7fffffff, 0x80000000, rng.int(2 ** 32)]), p) } break
    }
  }
  return b
}

/** Values that break assumptions about numbers, strings and shapes in JSON. */
export const JSON_EDGE: readonly unknown[] = [
  -1, 0, 1, 0.5, -0.5, 511, 512, 4096, 2 ** 31, 2 ** 32, 2 ** 50, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308,
  '', '.', '..', '/', './', '../x', 'a/../../b', '/etc/passwd', 'a\u0000b', 'x'.repeat(300), '\ud800', 'sha256:', 'sha256:' + '0'.repeat(64),
  null, true, false, [], {}, [1, 2], { a: 1 }, 'reg', 'dir', 'chunk', 'symlink', 'hardlink', 'char', 'block', 'fifo',
]

export function mutateString(rng: Rng, s: string, alphabet: readonly string[]): string {
  let out = s
  const ops = 1 + rng.int(4)
  for (let k = 0; k < ops; k++) {
    const p = rng.int(out.length + 1)
    switch (rng.int(4)) {
      case 0: out = out.slice(0, p) + rng.pick(alphabet) + out.slice(p); break
      case 1: out = out.slice(0, p) + out.slice(p + 1 + rng.int(4)); break
      case 2: out = out.slice(0, p) + out.slice(p, p + 1 + rng.int(8)).repeat(1 + rng.int(3)) + out.slice(p); break
      default: out = out.slice(0, p) + String.fromCharCode(rng.int(rng.chance(0.9) ? 128 : 0x10000)) + out.slice(p + 1); break
    }
  }
  return out
}
