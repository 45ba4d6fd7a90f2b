/**
 * PAX extended header records (POSIX.1-2001, typeflags 'x' and 'g').
 *
 * The payload of a PAX header is a sequence of records "<len> <key>=<value>\n" where <len> is the
 * decimal length of the whole record including the length digits, the space and the newline.
 * Keys are UTF-8; values are raw bytes (xattr values may be binary).
 */
import { TarError } from '../errors.js'

export const PAX_XATTR_PREFIX = 'SCHILY.xattr.'

export function parsePaxRecords(data: Buffer, offset: number): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  let pos = 0
  while (pos < data.length) {
    // Some writers pad the payload with NULs; stop there.
    if (data[pos] === 0) break
    const sp = data.indexOf(0x20, pos)
    if (sp < 0 || sp - pos > 20) throw new TarError(`PAX header at offset ${offset}: malformed record at byte ${pos}`)
    const lenStr = data.toString('latin1', pos, sp)
    if (!/^[0-9]+$/.test(lenStr)) throw new TarError(`PAX header at offset ${offset}: bad record length ${JSON.stringify(lenStr)}`)
    const len = Number(lenStr)
    const end = pos + len
    if (len <= sp - pos + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw new TarError(`PAX header at offset ${offset}: record at byte ${pos} has bad length ${len}`)
    }
    const eq = data.indexOf(0x3d, sp + 1)
    if (eq < 0 || eq >= end - 1 || eq === sp + 1) throw new TarError(`PAX header at offset ${offset}: record at byte ${pos} has no key=value`)
    const key = data.toString('utf8', sp + 1, eq)
    out.set(key, Buffer.from(data.subarray(eq + 1, end - 1)))
    pos = end
  }
  return out
}

/** One record, with the self-inclusive length prefix. */
export function formatPaxRecord(key: string, value: Buffer | string): Buffer {
  const k = Buffer.from(key, 'utf8')
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  if (k.includes(0x3d) || k.includes(0) || k.length === 0) throw new TarError(`invalid PAX key ${JSON.stringify(key)}`)
  const base = k.length + v.length + 3 // ' ', '=', '\n'
  let len = base + String(base).length
  if (String(len).length !== String(base).length) len = base + String(len).length
  return Buffer.concat([Buffer.from(`${len} `, 'latin1'), k, Buffer.from('='), v, Buffer.from('\n')])
}

/** Records sorted by key (bytewise), so output is deterministic. */
export function formatPaxRecords(records: Map<string, Buffer | string>): Buffer {
  const keys = [...records.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  return Buffer.concat(keys.map((k) => formatPaxRecord(k, records.get(k) as Buffer | string)))
}

/**
 * Parses a PAX time "[-]sec[.frac]" into whole seconds (floored) and nanoseconds in [0, 1e9).
 */
export function parsePaxTime(v: string, offset: number): { sec: number; nsec: number } {
  const m = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(v)
  if (!m) throw new TarError(`PAX header at offset ${offset}: bad time ${JSON.stringify(v)}`)
  const neg = m[1] === '-'
  const whole = Number(m[2])
  const frac = Number(((m[3] ?? '') + '000000000').slice(0, 9))
  if (!Number.isSafeInteger(whole)) throw new TarError(`PAX header at offset ${offset}: time out of range ${JSON.stringify(v)}`)
  if (!neg) return { sec: whole, nsec: frac }
  if (frac === 0) return { sec: whole === 0 ? 0 : -whole, nsec: 0 }
  return { sec: -whole - 1, nsec: 1e9 - frac }
}

/** Inverse of parsePaxTime; trailing zeros of the fraction are dropped. */
export function formatPaxTime(sec: number, nsec: number): string {
  if (nsec === 0) return String(sec)
  if (sec >= 0) return `${sec}.${String(nsec).padStart(9, '0').replace(/0+$/, '')}`
  // sec + nsec/1e9 is negative: -(|sec| - 1) . (1e9 - nsec)
  const whole = -(sec + 1)
  return `-${whole}.${String(1e9 - nsec).padStart(9, '0').replace(/0+$/, '')}`
}
