/**
 * TOC JSON serialisation, byte-compatible with the reference writer (Go's
 * json.MarshalIndent(toc, "", "\t") of estargz.JTOC):
 *
 * - fields in the Go struct's order, zero values omitted (`omitempty`),
 * - tab indentation, `"key": value`, no trailing newline,
 * - `<`, `>`, `&`, U+2028 and U+2029 escaped as \u003c, \u003e, \u0026, \u2028, \u2029,
 * - xattr keys sorted, values base64 (Go's []byte).
 */
import type { TocEntry } from './types.js'

const FIELD_ORDER = [
  'name', 'type', 'size', 'modtime', 'linkName', 'mode', 'uid', 'gid', 'userName', 'groupName',
  'offset', 'innerOffset', 'devMajor', 'devMinor', 'xattrs', 'digest', 'chunkOffset', 'chunkSize', 'chunkDigest',
] as const satisfies readonly (keyof TocEntry)[]

export function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}

function entryJson(e: TocEntry, indent: string): string {
  const inner = indent + '\t'
  const lines: string[] = []
  for (const k of FIELD_ORDER) {
    const v = e[k]
    if (v === undefined || v === 0 || v === '') continue
    if (k === 'xattrs') {
      const x = v as Record<string, string>
      const keys = Object.keys(x).sort(byteCompare)
      if (keys.length === 0) continue
      const xl = keys.map((xk) => `${inner}\t${goJsonString(xk)}: ${goJsonString(x[xk] as string)}`)
      lines.push(`${inner}"xattrs": {\n${xl.join(',\n')}\n${inner}}`)
    } else if (typeof v === 'number') {
      lines.push(`${inner}"${k}": ${v}`)
    } else {
      lines.push(`${inner}"${k}": ${goJsonString(v as string)}`)
    }
  }
  return `${indent}{\n${lines.join(',\n')}\n${indent}}`
}

/** The TOC JSON bytes; their sha256 is the TOC digest. */
export function serializeToc(entries: readonly TocEntry[], version = 1): Buffer {
  if (entries.length === 0) return Buffer.from(`{\n\t"version": ${version},\n\t"entries": []\n}`)
  const parts = entries.map((e) => entryJson(e, '\t\t'))
  return Buffer.from(`{\n\t"version": ${version},\n\t"entries": [\n${parts.join(',\n')}\n\t]\n}`)
}

/**
 * RFC 3339 UTC at second precision, rounded half up (Go's t.UTC().Round(time.Second)), or ''
 * when the whole-second part is 0 (the reference omits the epoch).
 */
export function formatModtime(sec: number, nsec: number): string {
  if (sec === 0) return ''
  const s = nsec >= 500_000_000 ? sec + 1 : sec
  const iso = new Date(s * 1000).toISOString()
  return iso.replace(/\.\d{3}Z$/, 'Z')
}
