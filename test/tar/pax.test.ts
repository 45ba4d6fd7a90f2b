import t from 'tap'
import fc from 'fast-check'
import { formatPaxRecord, formatPaxRecords, formatPaxTime, parsePaxRecords, parsePaxTime } from '../../src/tar/pax.js'

t.test('record length includes its own digits', async (tt) => {
  tt.equal(formatPaxRecord('path', 'a').toString(), '9 path=a\n')
  // 3 + 1 + 5 = 9 bytes without the length; with "10" it becomes 11 → length is 11.
  tt.equal(formatPaxRecord('a', 'bbbbb').toString(), '11 a=bbbbb\n')
  const long = 'x'.repeat(95) // 1 + 95 + 3 = 99 (+2) = 101 → needs 3 digits → 102
  const r = formatPaxRecord('k', long)
  tt.equal(r.length, Number(r.toString().split(' ')[0]))
})

t.test('records round trip, binary values (property)', async (tt) => {
  fc.assert(fc.property(
    fc.dictionary(fc.string({ minLength: 1, maxLength: 30 }).filter((k) => !k.includes('=') && !k.includes('\0')), fc.uint8Array({ maxLength: 300 })),
    (d) => {
      const m = new Map(Object.entries(d).map(([k, v]) => [k, Buffer.from(v)]))
      const parsed = parsePaxRecords(formatPaxRecords(m), 0)
      if (parsed.size !== m.size) return false
      for (const [k, v] of m) if (!parsed.get(k)?.equals(v)) return false
      return true
    },
  ))
  tt.pass('property held')
})

t.test('malformed records are TarErrors naming the header offset', async (tt) => {
  for (const bad of ['5 a=b\n', '9 path=a', 'x path=a\n', '6 ab\n\n', '99 path=a\n']) {
    tt.throws(() => parsePaxRecords(Buffer.from(bad), 1536), { name: 'TarError', message: /offset 1536/ }, JSON.stringify(bad))
  }
  tt.same(parsePaxRecords(Buffer.from('9 path=a\n\0\0\0'), 0).get('path'), Buffer.from('a'), 'trailing NULs ignored')
})

t.test('times', async (tt) => {
  tt.same(parsePaxTime('1234567890.5', 0), { sec: 1234567890, nsec: 500_000_000 })
  tt.same(parsePaxTime('1.000000001999', 0), { sec: 1, nsec: 1 }, 'sub-nanosecond digits dropped')
  tt.same(parsePaxTime('-1.25', 0), { sec: -2, nsec: 750_000_000 })
  tt.same(parsePaxTime('-5', 0), { sec: -5, nsec: 0 })
  tt.throws(() => parsePaxTime('1e5', 0))
  tt.equal(formatPaxTime(1234567890, 500_000_000), '1234567890.5')
  tt.equal(formatPaxTime(-2, 750_000_000), '-1.25')
  fc.assert(fc.property(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.integer({ min: 0, max: 999_999_999 }), (sec, nsec) => {
    const r = parsePaxTime(formatPaxTime(sec, nsec), 0)
    return r.sec === sec && r.nsec === nsec
  }))
})
