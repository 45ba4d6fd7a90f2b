/**
 * A small ustar writer for the benchmark's generated layers: regular files and directories with
 * ASCII names, owner 0:0 and one fixed mtime, streamed to disk with back-pressure so a 1 GB layer
 * never sits in memory. (The project's full tar writer lives in src/tar/; this one has no PAX, no
 * links and no xattrs because the generated trees need none, and it keeps bench/ independent of
 * code under active change.)
 *
 * Header block (512 bytes), POSIX.1-1988 ustar, numbers as NUL-terminated octal:
 *   0 name[100]  100 mode[8]  108 uid[8]  116 gid[8]  124 size[12]  136 mtime[12]  148 chksum[8]
 *   156 typeflag ('0' file, '5' dir)  157 linkname[100]  257 magic "ustar\0"  263 version "00"
 *   265 uname[32]  297 gname[32]  329 devmajor[8]  337 devminor[8]  345 prefix[155]  500 pad[12]
 * chksum is the sum of the header's bytes with the chksum field read as 8 spaces, written as six
 * octal digits, NUL, space. The payload follows, padded to 512; the archive ends with two zero blocks.
 */
import { createWriteStream, type WriteStream } from 'node:fs'
import { once } from 'node:events'

export const BLOCK = 512
/** 2023-01-01T00:00:00Z: a fixed, non-zero mtime (the reference omits a zero one from TOCs). */
export const FIXED_MTIME = 1672531200

export type TarEntry =
  | { type: 'dir'; name: string; mode?: number }
  | { type: 'file'; name: string; mode?: number; size: number; data: () => Iterable<Buffer> }

function octal(h: Buffer, off: number, len: number, n: number): void {
  const s = n.toString(8)
  if (s.length > len - 1) throw new RangeError(`tar: ${n} does not fit ${len - 1} octal digits`)
  h.write(s.padStart(len - 1, '0') + '\0', off, len, 'latin1')
}

/** Split a name into ustar prefix + name at a '/' when it is longer than 100 bytes. */
function splitName(name: string): [string, string] {
  if (name.length <= 100) return ['', name]
  for (let i = name.lastIndexOf('/', 155); i > 0; i = name.lastIndexOf('/', i - 1)) {
    if (name.length - i - 1 <= 100) return [name.slice(0, i), name.slice(i + 1)]
  }
  throw new RangeError(`tar: name too long for ustar: ${name}`)
}

export function header(e: TarEntry): Buffer {
  if (!/^[\x20-\x7e]+$/.test(e.name)) throw new RangeError(`tar: name must be printable ASCII: ${JSON.stringify(e.name)}`)
  const name = e.type === 'dir' && !e.name.endsWith('/') ? `${e.name}/` : e.name
  const [prefix, rest] = splitName(name)
  const h = Buffer.alloc(BLOCK)
  h.write(rest, 0, 100, 'latin1')
  octal(h, 100, 8, e.mode ?? (e.type === 'dir' ? 0o755 : 0o644))
  octal(h, 108, 8, 0)
  octal(h, 116, 8, 0)
  octal(h, 124, 12, e.type === 'file' ? e.size : 0)
  octal(h, 136, 12, FIXED_MTIME)
  h.write('        ', 148, 8, 'latin1')
  h.write(e.type === 'dir' ? '5' : '0', 156, 1, 'latin1')
  h.write('ustar\0' + '00', 257, 8, 'latin1')
  h.write('root', 265, 32, 'latin1')
  h.write('root', 297, 32, 'latin1')
  h.write(prefix, 345, 155, 'latin1')
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1')
  return h
}

async function put(ws: WriteStream, b: Buffer): Promise<void> {
  if (!ws.write(b)) await once(ws, 'drain')
}

/** Write `entries` as a tar at `path`; returns its size in bytes. */
export async function writeTar(path: string, entries: Iterable<TarEntry>): Promise<number> {
  const ws = createWriteStream(path)
  const failed = once(ws, 'error').then(([e]) => { throw e })
  failed.catch(() => undefined)
  let total = 0
  const write = async (b: Buffer): Promise<void> => {
    total += b.length
    await Promise.race([put(ws, b), failed])
  }
  for (const e of entries) {
    await write(header(e))
    if (e.type !== 'file') continue
    let n = 0
    for (const chunk of e.data()) {
      n += chunk.length
      if (n > e.size) throw new Error(`tar: ${e.name}: data longer than its size ${e.size}`)
      await write(chunk)
    }
    if (n !== e.size) throw new Error(`tar: ${e.name}: data is ${n} bytes, size says ${e.size}`)
    const pad = (BLOCK - (n % BLOCK)) % BLOCK
    if (pad) await write(Buffer.alloc(pad))
  }
  await write(Buffer.alloc(2 * BLOCK))
  ws.end()
  await Promise.race([once(ws, 'finish'), failed])
  return total
}
