/**
 * Streaming TOC parse: feed the inflated TOC JSON in chunks, get its entries one at a time, and
 * never hold the whole JSON string or the whole object graph. The sha256 of the exact bytes fed
 * is kept on the way, so the TOC digest check stays over the bytes the registry sent.
 *
 * Two parsers, measured by bench/toc-stream.ts (figures in bench/RESULTS.md):
 * - TocEntryScanner (chosen): a byte scanner finds where each element of the top-level
 *   "entries" array starts and ends (tracking only string/escape state and nesting depth; UTF-8
 *   continuation bytes are all >= 0x80, so no structural byte can hide in one), then JSON.parse
 *   parses that one small slice. V8's parser does the value work.
 * - TocTokenizer: a full character-level tokenizer in JS that builds each entry itself. It is
 *   the "no JSON.parse at all" baseline; several times slower here, kept for the measurement.
 *
 * Both accept {"version": N, "entries": [...]} with the keys in any order and other top-level
 * keys skipped; anything else is a TocError.
 */
import { createHash, type Hash } from 'node:crypto'
import { StringDecoder } from 'node:string_decoder'
import { TocError } from '../errors.js'

export type EntrySink = (entry: Record<string, unknown>) => void

const QUOTE = 0x22
const BACKSLASH = 0x5c
const LBRACE = 0x7b
const RBRACE = 0x7d
const LBRACK = 0x5b
const RBRACK = 0x5d

export interface TocStreamResult {
  version: number | undefined
  entries: number
  /** "sha256:<hex>" of every byte written. */
  digest: string
  bytes: number
}

export class TocEntryScanner {
  private readonly hash: Hash | undefined
  private bytes = 0
  private depth = 0
  private inString = false
  private escape = false
  /** Bytes of the element being collected (from its first byte), or of a top-level key/scalar. */
  private carry: Buffer[] = []
  private collecting: 'none' | 'key' | 'entry' | 'scalar' = 'none'
  private lastKey = ''
  /** At depth 1: the next string is a key (after '{' or ','), not a value (after ':'). */
  private expectKey = false
  private inEntries = false
  private sawEntries = false
  private version: number | undefined
  private count = 0

  /** `hash` false: the caller hashes the bytes itself (and digest is ''). */
  constructor(private readonly sink: EntrySink, private readonly maxEntryBytes = 1 << 20, hash = true) {
    this.hash = hash ? createHash('sha256') : undefined
  }

  write(chunk: Buffer): void {
    this.hash?.update(chunk)
    this.bytes += chunk.length
    let start = this.collecting === 'none' ? -1 : 0
    for (let i = 0; i < chunk.length; i++) {
      if (this.inString) {
        if (this.escape) { this.escape = false; continue }
        // Jump to the next quote (strings are most of a TOC); it ends the string unless an odd
        // run of backslashes precedes it.
        const j = chunk.indexOf(QUOTE, i)
        const stop = j < 0 ? chunk.length : j
        let k = stop - 1
        while (k >= i && chunk[k] === BACKSLASH) k--
        const odd = ((stop - 1 - k) & 1) === 1
        if (j < 0) { this.escape = odd; i = chunk.length; continue }
        i = j
        if (odd) continue
        this.inString = false
        if (this.collecting === 'key' && this.depth === 1) { this.endKey(chunk, start, i + 1); start = -1 }
        continue
      }
      const c = chunk[i] as number
      if (this.collecting === 'scalar' && (c === 0x2c || c === RBRACE)) { this.endScalar(chunk, start, i); start = -1 }
      switch (c) {
        case QUOTE:
          this.inString = true
          if (this.depth === 1 && this.collecting === 'none' && this.expectKey) { this.collecting = 'key'; start = i }
          break
        case LBRACE:
        case LBRACK:
          this.depth++
          if (this.depth === 1 && c !== LBRACE) throw new TocError('toc-json', 'TOC is not a JSON object')
          if (this.depth === 1) this.expectKey = true
          if (this.depth === 2 && c === LBRACK && this.lastKey === 'entries') { this.inEntries = true; this.sawEntries = true }
          else if (this.depth === 3 && this.inEntries) {
            if (c !== LBRACE) throw new TocError('toc-json', 'a TOC entry is not an object')
            this.collecting = 'entry'; start = i
          }
          break
        case RBRACE:
        case RBRACK:
          if (this.depth === 3 && this.collecting === 'entry') { this.endEntry(chunk, start, i + 1); start = -1 }
          if (this.depth === 2 && this.inEntries) this.inEntries = false
          if (this.depth === 2) this.lastKey = ''
          this.depth--
          if (this.depth < 0) throw new TocError('toc-json', 'unbalanced TOC JSON')
          break
        case 0x3a: // ':' after a depth-1 key: a scalar value starts next (if not an object/array)
          if (this.depth === 1) this.expectKey = false
          if (this.depth === 1 && this.lastKey === 'version') { this.collecting = 'scalar'; start = i + 1 }
          break
        case 0x2c:
          if (this.depth === 1) { this.lastKey = ''; this.expectKey = true }
          break
        default:
          if (this.depth === 0 && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) throw new TocError('toc-json', 'bytes outside the TOC object')
      }
    }
    if (this.collecting !== 'none' && start >= 0) {
      this.carry.push(chunk.subarray(start))
      if (this.collecting === 'entry' && this.carried() > this.maxEntryBytes) throw new TocError('toc-json', `a TOC entry is larger than ${this.maxEntryBytes} bytes`)
    }
  }

  private carried(): number { let n = 0; for (const b of this.carry) n += b.length; return n }

  private take(chunk: Buffer, start: number, end: number): string {
    const tail = chunk.subarray(Math.max(0, start), end)
    const s = this.carry.length === 0 ? tail.toString('utf8') : Buffer.concat([...this.carry, tail]).toString('utf8')
    this.carry = []
    this.collecting = 'none'
    return s
  }

  private endKey(chunk: Buffer, start: number, end: number): void {
    try { this.lastKey = JSON.parse(this.take(chunk, start, end)) as string } catch (err) { throw new TocError('toc-json', 'bad key in the TOC object', undefined, { cause: err }) }
  }

  private endScalar(chunk: Buffer, start: number, end: number): void {
    let v: unknown
    try { v = JSON.parse(this.take(chunk, start, end)) } catch (err) { throw new TocError('toc-json', 'TOC version is not a number', undefined, { cause: err }) }
    if (typeof v !== 'number') throw new TocError('toc-json', 'TOC version is not a number')
    this.version = v
  }

  private endEntry(chunk: Buffer, start: number, end: number): void {
    let e: unknown
    const text = this.take(chunk, start, end)
    try { e = JSON.parse(text) } catch (err) { throw new TocError('toc-json', `a TOC entry is not valid JSON: ${(err as Error).message}`, undefined, { cause: err }) }
    this.count++
    this.sink(e as Record<string, unknown>)
  }

  end(): TocStreamResult {
    if (this.depth !== 0 || this.inString || this.bytes === 0) throw new TocError('toc-json', 'TOC JSON ends early')
    if (!this.sawEntries) throw new TocError('toc-json', 'TOC has no entries array')
    return { version: this.version, entries: this.count, digest: this.hash === undefined ? '' : `sha256:${this.hash.digest('hex')}`, bytes: this.bytes }
  }
}

/**
 * The full-tokenizer baseline: a small recursive-descent-free JSON value builder driven one
 * character at a time (a stack of containers), emitting each element of "entries" when it closes.
 */
export class TocTokenizer {
  private readonly hash: Hash = createHash('sha256')
  private readonly decoder = new StringDecoder('utf8')
  private bytes = 0
  private readonly stack: Array<{ v: Record<string, unknown> | unknown[]; key: string | undefined }> = []
  private token = ''
  private mode: 'value' | 'string' | 'escape' | 'unicode' | 'number' | 'literal' = 'value'
  private unicode = ''
  private isKey = false
  private version: number | undefined
  private count = 0
  private done = false
  private sawEntries = false

  constructor(private readonly sink: EntrySink) {}

  write(chunk: Buffer): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    const s = this.decoder.write(chunk)
    for (let i = 0; i < s.length; i++) this.char(s[i] as string)
  }

  private top(): { v: Record<string, unknown> | unknown[]; key: string | undefined } | undefined { return this.stack[this.stack.length - 1] }

  private put(v: unknown): void {
    const t = this.top()
    if (t === undefined) { this.done = true; return }
    if (Array.isArray(t.v)) {
      // Elements of the top-level entries array go to the sink, not into memory.
      if (this.stack.length === 2 && (this.stack[0] as { key: string | undefined }).key === 'entries') { this.count++; this.sink(v as Record<string, unknown>); return }
      t.v.push(v)
    } else {
      const k = t.key as string
      if (this.stack.length === 1 && k === 'version') this.version = v as number
      // As JSON.parse does: "__proto__" is an own key, not the prototype setter.
      if (this.stack.length > 1) Object.defineProperty(t.v, k, { value: v, writable: true, enumerable: true, configurable: true })
      t.key = undefined
    }
  }

  private finishScalar(): void {
    if (this.mode === 'number') { const n = Number(this.token); if (Number.isNaN(n)) throw new TocError('toc-json', `bad number ${this.token}`); this.put(n) }
    else if (this.mode === 'literal') {
      const v = this.token === 'true' ? true : this.token === 'false' ? false : this.token === 'null' ? null : undefined
      if (v === undefined) throw new TocError('toc-json', `bad literal ${this.token}`)
      this.put(v)
    }
    this.mode = 'value'
    this.token = ''
  }

  private char(c: string): void {
    switch (this.mode) {
      case 'string':
        if (c === '"') {
          this.mode = 'value'
          const t = this.top()
          if (this.isKey && t) t.key = this.token
          else this.put(this.token)
          this.token = ''
        } else if (c === '\\') this.mode = 'escape'
        else this.token += c
        return
      case 'escape': {
        this.mode = 'string'
        const m: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }
        if (c === 'u') { this.mode = 'unicode'; this.unicode = ''; return }
        const r = m[c]
        if (r === undefined) throw new TocError('toc-json', `bad escape \\${c}`)
        this.token += r
        return
      }
      case 'unicode':
        this.unicode += c
        if (this.unicode.length === 4) { this.token += String.fromCharCode(parseInt(this.unicode, 16)); this.mode = 'string' }
        return
      case 'number':
      case 'literal':
        if (/[0-9a-zA-Z+\-.]/.test(c)) { this.token += c; return }
        this.finishScalar()
        break
      default:
    }
    if (c === ' ' || c === '\n' || c === '\r' || c === '\t' || c === ':' || c === ',') return
    if (this.done) throw new TocError('toc-json', 'bytes after the TOC object')
    if (c === '"') {
      const t = this.top()
      this.isKey = t !== undefined && !Array.isArray(t.v) && t.key === undefined
      this.mode = 'string'
      return
    }
    if (c === '{' || c === '[') {
      if (this.stack.length === 0 && c !== '{') throw new TocError('toc-json', 'TOC is not a JSON object')
      if (c === '[' && this.stack.length === 1 && this.top()?.key === 'entries') this.sawEntries = true
      this.stack.push({ v: c === '{' ? {} : [], key: undefined })
      return
    }
    if (c === '}' || c === ']') {
      const t = this.stack.pop()
      if (t === undefined) throw new TocError('toc-json', 'unbalanced TOC JSON')
      if (this.stack.length >= 1) this.put(t.v)
      else this.done = true
      return
    }
    this.mode = c === '-' || (c >= '0' && c <= '9') ? 'number' : 'literal'
    this.token = c
  }

  end(): TocStreamResult {
    const rest = this.decoder.end()
    for (let i = 0; i < rest.length; i++) this.char(rest[i] as string)
    if (this.mode === 'number' || this.mode === 'literal') this.finishScalar()
    if (!this.done) throw new TocError('toc-json', 'TOC JSON ends early')
    if (!this.sawEntries) throw new TocError('toc-json', 'TOC has no entries array')
    return { version: this.version, entries: this.count, digest: `sha256:${this.hash.digest('hex')}`, bytes: this.bytes }
  }
}
