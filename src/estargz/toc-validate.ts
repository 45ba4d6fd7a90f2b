import { LimitError, TocError } from '../errors.js'
import { DEFAULT_TOC_LIMITS, type FooterKind, type Toc, type TocEntry, type TocEntryType, type TocLimits } from './types.js'

const TYPES: ReadonlySet<string> = new Set<TocEntryType>(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk'])
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/
const UINT32_MAX = 0xffff_ffff
/** A name needs the full clean: a leading, trailing or double "/", or a "." / ".." component. */
const CLEAN_NEEDED = /^\/|\/$|\/\/|(^|\/)\.\.?(\/|$)/
/** Date.parse is slow and TOCs repeat a few modtimes: remember the ones seen (bounded). */
const goodModtimes = new Set<string>()

/**
 * Clean a TOC name relative to the layer root, as the reference reader does (estargz.go
 * cleanEntryName: path.Clean("/" + name) without the leading "/"): "/", "./" and "." are the
 * root (""), "/x", "./x", "x/" and "x//y/." are "x" and "x/y". Producers differ here: GNU tar
 * `-C dir .` writes "./x", umoci and `tar -P` write "/x", and the reference converter copies
 * names as they are, so a reader must accept all of them.
 *
 * Refused, because no cleaning makes them safe: a NUL byte, and a ".." that climbs above the root
 * (the reference clamps "../x" to "x"; a name that tries to leave the layer is treated as hostile
 * here). A ".." that stays inside ("a/../b" is "b") is cleaned like any other component.
 */
export function normaliseName(raw: string, maxBytes: number): string {
  if (raw.includes('\0')) throw new TocError('name-nul', 'name contains a NUL byte', raw)
  // UTF-8 takes at most 3 bytes per UTF-16 code unit: short names need no byte count.
  if (raw.length * 3 > maxBytes && Buffer.byteLength(raw) > maxBytes) throw new TocError('name-length', `name longer than ${maxBytes} bytes`, raw)
  // Most names are clean already ("a/b", "./a/b"): no empty, "." or ".." component.
  const body = raw.startsWith('./') ? raw.slice(2) : raw
  if (body !== '' && !CLEAN_NEEDED.test(body)) return body
  const parts: string[] = []
  for (const p of raw.split('/')) {
    if (p === '' || p === '.') continue
    if (p === '..') {
      if (parts.length === 0) throw new TocError('name-escape', 'name climbs above the layer root with ".."', raw)
      parts.pop()
      continue
    }
    parts.push(p)
  }
  return parts.join('/')
}

function fail(rule: string, msg: string, name: string): never {
  throw new TocError(rule, msg, name)
}

function checkUint(e: Record<string, unknown>, field: string, name: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = e[field]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) {
    fail('field-type', `${field} must be an integer in [0, ${max}], got ${JSON.stringify(v)}`, name)
  }
  return v
}

function checkString(e: Record<string, unknown>, field: string, name: string): string | undefined {
  const v = e[field]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') fail('field-type', `${field} must be a string`, name)
  return v
}

/** One entry, parsed from untrusted JSON into a TocEntry with a normalised name. */
function parseEntry(raw: unknown, index: number, limits: TocLimits): TocEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new TocError('entry-object', `entry #${index} is not an object`)
  }
  const e = raw as Record<string, unknown>
  if (typeof e.name !== 'string') throw new TocError('name-required', `entry #${index} has no string name`)
  const rawName = e.name
  const type = e.type
  if (typeof type !== 'string' || !TYPES.has(type)) fail('type', `unknown type ${JSON.stringify(type)}`, rawName)
  const name = normaliseName(rawName, limits.maxNameBytes)
  if (name === '' && type !== 'dir') fail('name-empty', 'only the root directory may have an empty name', rawName)
  const out: TocEntry = { name, type: type as TocEntryType }
  const size = checkUint(e, 'size', rawName, limits.maxFileSize)
  if (size !== undefined) out.size = size
  const modtime = checkString(e, 'modtime', rawName)
  if (modtime !== undefined && modtime !== '') {
    if (!goodModtimes.has(modtime)) {
      if (Number.isNaN(Date.parse(modtime))) fail('modtime', `modtime ${JSON.stringify(modtime)} is not RFC 3339`, rawName)
      if (goodModtimes.size > 4096) goodModtimes.clear()
      goodModtimes.add(modtime)
    }
    out.modtime = modtime
  }
  const linkName = checkString(e, 'linkName', rawName)
  if (linkName !== undefined && linkName !== '') out.linkName = linkName
  const mode = checkUint(e, 'mode', rawName, 0o7777777)
  if (mode !== undefined) out.mode = mode
  const uid = checkUint(e, 'uid', rawName, UINT32_MAX)
  if (uid !== undefined) out.uid = uid
  const gid = checkUint(e, 'gid', rawName, UINT32_MAX)
  if (gid !== undefined) out.gid = gid
  const userName = checkString(e, 'userName', rawName)
  if (userName) out.userName = userName
  const groupName = checkString(e, 'groupName', rawName)
  if (groupName) out.groupName = groupName
  const devMajor = checkUint(e, 'devMajor', rawName, UINT32_MAX)
  if (devMajor !== undefined) out.devMajor = devMajor
  const devMinor = checkUint(e, 'devMinor', rawName, UINT32_MAX)
  if (devMinor !== undefined) out.devMinor = devMinor
  const digest = checkString(e, 'digest', rawName)
  if (digest !== undefined && digest !== '') {
    if (!DIGEST_RE.test(digest)) fail('digest-format', `digest ${JSON.stringify(digest)} is not sha256:<64 hex>`, rawName)
    out.digest = digest
  }
  const chunkDigest = checkString(e, 'chunkDigest', rawName)
  if (chunkDigest !== undefined && chunkDigest !== '') {
    if (!DIGEST_RE.test(chunkDigest)) fail('digest-format', `chunkDigest ${JSON.stringify(chunkDigest)} is not sha256:<64 hex>`, rawName)
    out.chunkDigest = chunkDigest
  }
  const offset = checkUint(e, 'offset', rawName)
  if (offset !== undefined) out.offset = offset
  const chunkOffset = checkUint(e, 'chunkOffset', rawName, limits.maxFileSize)
  if (chunkOffset !== undefined) out.chunkOffset = chunkOffset
  const chunkSize = checkUint(e, 'chunkSize', rawName, limits.maxFileSize)
  if (chunkSize !== undefined) out.chunkSize = chunkSize
  const innerOffset = checkUint(e, 'innerOffset', rawName)
  if (innerOffset !== undefined) out.innerOffset = innerOffset
  if (e.xattrs !== undefined && e.xattrs !== null) {
    if (typeof e.xattrs !== 'object' || Array.isArray(e.xattrs)) fail('xattrs', 'xattrs must be an object', rawName)
    const xs = e.xattrs as Record<string, unknown>
    const keys = Object.keys(xs)
    if (keys.length > limits.maxXattrs) fail('xattrs', `more than ${limits.maxXattrs} xattrs`, rawName)
    let bytes = 0
    const xattrs: Record<string, string> = {}
    for (const k of keys) {
      const v = xs[k]
      if (typeof v !== 'string' || !BASE64_RE.test(v) || v.length % 4 !== 0) fail('xattrs', `xattr ${JSON.stringify(k)} is not base64`, rawName)
      if (k === '' || k.includes('\0')) fail('xattrs', 'xattr name is empty or has a NUL byte', rawName)
      bytes += k.length + v.length
      // An own key even for "__proto__" (JSON.parse made it one; plain assignment would set the prototype).
      Object.defineProperty(xattrs, k, { value: v, writable: true, enumerable: true, configurable: true })
    }
    if (bytes > limits.maxXattrBytes) fail('xattrs', `xattrs larger than ${limits.maxXattrBytes} bytes`, rawName)
    if (keys.length > 0) out.xattrs = xattrs
  }
  return out
}

export interface ValidateOptions {
  /** Payload must lie before this compressed offset (the TOC's own offset). */
  tocOffset: number
  footerKind: FooterKind
  limits?: Partial<TocLimits>
}

/**
 * Parse and validate a TOC from untrusted JSON. Returns a TOC whose names are normalised and
 * whose chunk layout is known to be consistent; throws TocError naming the entry and the rule.
 * The rules are TocValidator's (below), which the streaming index build applies entry by entry.
 */
export function validateToc(json: unknown, opts: ValidateOptions): Toc {
  const limits: TocLimits = { ...DEFAULT_TOC_LIMITS, ...opts.limits }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TocError('toc-object', 'TOC is not a JSON object')
  const t = json as Record<string, unknown>
  checkTocVersion(t.version)
  if (!Array.isArray(t.entries)) throw new TocError('entries', 'TOC has no entries array')
  if (t.entries.length > limits.maxEntries) throw new LimitError(`TOC has ${t.entries.length} entries, more than the limit ${limits.maxEntries}`)
  const v = new TocValidator(opts)
  const entries: TocEntry[] = new Array(t.entries.length)
  for (let i = 0; i < t.entries.length; i++) entries[i] = v.add(t.entries[i])
  v.finish()
  return { version: 1, entries }
}

export function checkTocVersion(version: unknown): void {
  if (version !== 1) throw new TocError('version', `unsupported TOC version ${JSON.stringify(version)} (want 1)`)
}

const TYPE_CODE: Record<TocEntryType, number> = { dir: 1, reg: 2, symlink: 3, hardlink: 4, char: 5, block: 6, fifo: 7, chunk: 8 }

/**
 * The TOC rules, one entry at a time, for the whole-JSON parse above and the streaming index
 * build (src/index/toc-columns.ts) alike: add() parses and checks each raw entry in TOC order
 * and returns it; finish() runs the checks that need the whole TOC and rewrites each hardlink's
 * linkName to its cleaned target (on the objects add() returned). Holds one small record per
 * name (the duplicate and hardlink-target checks need them), never the entries.
 *
 * Rules beyond field types:
 * - payload offsets lie in [0, tocOffset) and strictly increase in TOC order (each payload starts
 *   its own gzip member, written in order);
 * - a regular file with size > 0 has an offset; its chunks ("chunk" entries, same name) follow it
 *   directly and are contiguous, covering [0, size) exactly;
 * - eStargz (non-legacy) chunks carry a chunkDigest;
 * - hardlink targets exist and are not directories; symlinks have a target;
 * - no two entries clean to the same name (chunks aside): "./a" and "/a" are one file, and which
 *   of two claims wins must not depend on the reader;
 * - hardlink targets are cleaned the same way as names.
 */
export class TocValidator {
  private readonly limits: TocLimits
  /** Cleaned name → entry type code. */
  private readonly seen = new Map<string, number>()
  private readonly hardlinks: TocEntry[] = []
  private count = 0
  private lastOffset = -1
  // The file whose chunks we expect next, and where the next chunk must start.
  private open: { name: string; next: number; size: number } | undefined

  constructor(private readonly opts: ValidateOptions) {
    this.limits = { ...DEFAULT_TOC_LIMITS, ...opts.limits }
  }

  /** Entries added so far. */
  get entries(): number { return this.count }

  private closeOpen(): void {
    const open = this.open
    if (!open) return
    if (open.next !== open.size) fail('chunk-coverage', `chunks cover ${open.next} of ${open.size} bytes`, open.name)
    this.open = undefined
  }

  add(raw: unknown): TocEntry {
    const i = this.count++
    if (this.count > this.limits.maxEntries) throw new LimitError(`TOC has more than the limit of ${this.limits.maxEntries} entries`)
    const opts = this.opts
    const e = parseEntry(raw, i, this.limits)
    if (e.type !== 'chunk') this.closeOpen()
    else if (!this.open || this.open.name !== e.name) fail('chunk-orphan', 'chunk does not follow its regular file', e.name)

    if (e.offset !== undefined && (e.type === 'reg' || e.type === 'chunk') && (e.type === 'chunk' || (e.size ?? 0) > 0)) {
      if (e.offset >= opts.tocOffset) fail('offset-range', `offset ${e.offset} is not before the TOC at ${opts.tocOffset}`, e.name)
      if (e.offset <= this.lastOffset) fail('offset-order', `offset ${e.offset} does not increase (previous payload at ${this.lastOffset})`, e.name)
      this.lastOffset = e.offset
    }

    switch (e.type) {
      case 'reg': {
        const size = e.size ?? 0
        if (size > 0) {
          if (e.offset === undefined) fail('offset-required', 'regular file with data has no offset', e.name)
          if ((e.chunkOffset ?? 0) !== 0) fail('chunk-contiguous', `first chunk starts at ${e.chunkOffset}, not 0`, e.name)
          const cs = e.chunkSize ?? 0
          if (cs > size) fail('chunk-coverage', `chunkSize ${cs} exceeds file size ${size}`, e.name)
          if (opts.footerKind !== 'legacy' && e.chunkDigest === undefined) fail('chunk-digest-required', 'chunk has no chunkDigest', e.name)
          this.open = { name: e.name, size, next: cs === 0 ? size : cs }
        }
        break
      }
      case 'chunk': {
        const open = this.open
        if (!open) fail('chunk-orphan', 'chunk does not follow its regular file', e.name)
        if (e.offset === undefined) fail('offset-required', 'chunk has no offset', e.name)
        if ((e.chunkOffset ?? 0) !== open.next) fail('chunk-contiguous', `chunk starts at ${e.chunkOffset ?? 0}, expected ${open.next}`, e.name)
        if (open.next >= open.size) fail('chunk-coverage', `chunk at ${open.next} is past the end of the file (${open.size} bytes)`, e.name)
        const cs = e.chunkSize ?? 0
        const end = cs === 0 ? open.size : open.next + cs
        if (end > open.size) fail('chunk-coverage', `chunk [${open.next}, ${end}) runs past the file size ${open.size}`, e.name)
        if (opts.footerKind !== 'legacy' && e.chunkDigest === undefined) fail('chunk-digest-required', 'chunk has no chunkDigest', e.name)
        open.next = end
        return e // chunks are not names of their own
      }
      case 'symlink':
        if (e.linkName === undefined) fail('symlink-target', 'symlink has no linkName', e.name)
        break
      case 'hardlink':
        if (e.linkName === undefined) fail('hardlink-target', 'hardlink has no linkName', e.name)
        this.hardlinks.push(e)
        break
      default:
        break
    }
    if (this.seen.has(e.name)) fail('duplicate-name', `cleans to ${JSON.stringify(e.name)}, as an earlier entry does`, (raw as { name: string }).name)
    this.seen.set(e.name, TYPE_CODE[e.type])
    return e
  }

  /** The whole-TOC checks; hardlinks' linkName become their cleaned targets. */
  finish(): void {
    this.closeOpen()
    for (const e of this.hardlinks) {
      const target = normaliseName(e.linkName as string, this.limits.maxNameBytes)
      const t = this.seen.get(target)
      if (t === undefined) fail('hardlink-target', `hardlink target ${JSON.stringify(e.linkName)} is not in the TOC`, e.name)
      if (t === TYPE_CODE.dir || t === TYPE_CODE.hardlink) fail('hardlink-target', `hardlink target ${JSON.stringify(e.linkName)} is a ${t === TYPE_CODE.dir ? 'dir' : 'hardlink'}`, e.name)
      e.linkName = target
    }
    this.seen.clear()
  }
}
