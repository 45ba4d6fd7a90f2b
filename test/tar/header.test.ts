import t from 'tap'
import fc from 'fast-check'
import {
  BLOCK_SIZE, computeChecksum, field, parseNumeric, paddingFor, verifyChecksum, writeChecksum, writeNumeric,
} from '../../src/tar/header.js'
import { TarError } from '../../src/errors.js'

t.test('octal fields', async (tt) => {
  const cases: [string, number][] = [['0000644\0', 0o644], ['644 \0\0\0\0', 0o644], ['  644\0', 0o644], ['\0\0\0\0\0\0\0\0', 0], ['00000000017 ', 0o17]]
  for (const [s, v] of cases) tt.equal(parseNumeric(Buffer.from(s, 'latin1'), 'f', 0), v, JSON.stringify(s))
  tt.throws(() => parseNumeric(Buffer.from('12a4\0', 'latin1'), 'mode', 1024), { name: 'TarError', message: /offset 1024: mode field is not octal/ })
})

t.test('base-256 fields (GNU)', async (tt) => {
  // 8 GiB + 1 as a 12-byte size field.
  const f = Buffer.alloc(12)
  f[0] = 0x80
  f.writeUIntBE(8 * 1024 ** 3 + 1, 6, 6)
  tt.equal(parseNumeric(f, 'size', 0), 8 * 1024 ** 3 + 1)
  // -1 and -2^40 (negative mtimes).
  tt.equal(parseNumeric(Buffer.alloc(12, 0xff), 'mtime', 0), -1)
  const g = Buffer.alloc(12)
  writeNumeric(g, -(2 ** 40), 'mtime')
  tt.equal(g[0], 0xff)
  tt.equal(parseNumeric(g, 'mtime', 0), -(2 ** 40))
  // Out of safe range.
  const h = Buffer.alloc(12, 0x7f)
  h[0] = 0x80
  tt.throws(() => parseNumeric(h, 'size', 512), TarError)
})

t.test('writeNumeric/parseNumeric round trip (property)', async (tt) => {
  fc.assert(fc.property(fc.oneof(fc.integer({ min: -(2 ** 52), max: 2 ** 52 }), fc.integer({ min: 0, max: 0o7777777 })), fc.constantFrom(8, 12), (v, len) => {
    const f = Buffer.alloc(len)
    if (len === 8 && (v >= 2 ** 55 || v < -(2 ** 55))) return
    writeNumeric(f, v, 'x')
    return parseNumeric(f, 'x', 0) === v
  }))
  tt.throws(() => writeNumeric(Buffer.alloc(8), 2 ** 56, 'uid'), TarError, 'does not fit 7 bytes of base-256')
  const f = Buffer.alloc(8)
  writeNumeric(f, 0o644, 'mode')
  tt.equal(f.toString('latin1'), '0000644\0', 'octal, zero padded, NUL terminated')
})

t.test('checksum', async (tt) => {
  const b = Buffer.alloc(BLOCK_SIZE)
  b.write('hello', 0, 'latin1')
  b[156] = 0x30
  writeChecksum(b)
  tt.match(field(b, 'chksum').toString('latin1'), /^[0-7]{6}\0 $/)
  tt.doesNotThrow(() => verifyChecksum(b, 0))
  const bad = Buffer.from(b)
  bad[10] = 1
  tt.throws(() => verifyChecksum(bad, 4096), { name: 'TarError', message: /offset 4096: bad checksum/ })
  // Old writers summed signed bytes.
  const s = Buffer.from(b)
  s[0] = 0xe9
  const { signed } = computeChecksum(s)
  field(s, 'chksum').write(signed.toString(8).padStart(6, '0') + '\0 ', 'latin1')
  tt.doesNotThrow(() => verifyChecksum(s, 0), 'signed checksum accepted')
})

t.test('padding', async (tt) => {
  tt.same([0, 1, 511, 512, 513].map(paddingFor), [0, 511, 1, 0, 511])
})
