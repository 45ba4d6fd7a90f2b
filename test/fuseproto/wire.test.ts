/** Layouts of src/fuseproto/wire.ts against linux/fuse.h: sizes, field offsets, round trips. */
import t from 'tap'
import {
  ATTR_OUT_SIZE, ENTRY_OUT_SIZE, FUSE_NOTIFY_RESEND, INIT_OUT_SIZE, IN_HEADER_SIZE, OUT_HEADER_SIZE, Op, STATFS_OUT_SIZE,
  direntSize, encodeAttrOut, encodeEntryOut, encodeGetxattrOut, encodeInitOut, encodeNotify, encodeOpenOut, encodeOutHeader,
  encodeStatfsOut, parseInHeader, parseInitIn, parseReadIn, readCString, writeDirent,
} from '../../src/fuseproto/wire.js'

function request(opcode: number, nodeid: number, args: Buffer, uniqueHi = 0): Buffer {
  const b = Buffer.alloc(IN_HEADER_SIZE + args.length)
  b.writeUInt32LE(b.length, 0)
  b.writeUInt32LE(opcode, 4)
  b.writeUInt32LE(12345, 8)
  b.writeUInt32LE(uniqueHi, 12)
  b.writeBigUInt64LE(BigInt(nodeid), 16)
  b.writeUInt32LE(1000, 24)
  b.writeUInt32LE(1001, 28)
  b.writeUInt32LE(42, 32)
  args.copy(b, IN_HEADER_SIZE)
  return b
}

t.test('header: parse, and a reply echoes unique (resend bit included)', async (t) => {
  const h = parseInHeader(request(Op.LOOKUP, 2 ** 40 + 7, Buffer.from('name\0'), 0x80000000))
  t.match(h, { opcode: Op.LOOKUP, nodeid: 2 ** 40 + 7, uid: 1000, gid: 1001, pid: 42, uniqueLo: 12345, uniqueHi: 0x80000000 })
  const out = encodeOutHeader(h, -2, 0)
  t.equal(out.length, OUT_HEADER_SIZE)
  t.equal(out.readUInt32LE(0), 16)
  t.equal(out.readInt32LE(4), -2)
  t.equal(out.readBigUInt64LE(8), (0x80000000n << 32n) | 12345n)
  t.equal(readCString(request(Op.LOOKUP, 1, Buffer.from('abc\0junk')), IN_HEADER_SIZE), 'abc')
})

t.test('struct sizes match linux/fuse.h', async (t) => {
  const attr = { ino: 5, size: 3, blocks: 8, mtimeMs: 1500, mode: 0o100644, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096 }
  t.equal(encodeEntryOut(5, 1, 1, attr).length, ENTRY_OUT_SIZE)
  t.equal(ENTRY_OUT_SIZE, 128)
  t.equal(encodeAttrOut(1, attr).length, ATTR_OUT_SIZE)
  t.equal(ATTR_OUT_SIZE, 104)
  t.equal(encodeOpenOut(1, 2).length, 16)
  t.equal(encodeStatfsOut({ blocks: 0, bfree: 0, bavail: 0, files: 1, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 }).length, STATFS_OUT_SIZE)
  t.equal(STATFS_OUT_SIZE, 80)
  t.equal(encodeGetxattrOut(7).readUInt32LE(0), 7)
  t.equal(INIT_OUT_SIZE, 64)
})

t.test('entry_out and attr fields at their offsets; times split into s + ns; negative entry', async (t) => {
  const attr = { ino: 9, size: 2 ** 33, blocks: 16, mtimeMs: 1_700_000_000_250, mode: 0o40755, nlink: 3, uid: 7, gid: 8, rdev: 0x1234, blksize: 4096 }
  const b = encodeEntryOut(9, 3600, 1.5, attr)
  t.equal(b.readBigUInt64LE(0), 9n, 'nodeid')
  t.equal(b.readBigUInt64LE(16), 3600n, 'entry_valid')
  t.equal(b.readBigUInt64LE(24), 1n, 'attr_valid')
  t.equal(b.readUInt32LE(36), 500_000_000, 'attr_valid_nsec')
  const a = 40
  t.equal(b.readBigUInt64LE(a), 9n, 'ino')
  t.equal(b.readBigUInt64LE(a + 8), 2n ** 33n, 'size')
  t.equal(b.readBigUInt64LE(a + 32), 1_700_000_000n, 'mtime s')
  t.equal(b.readUInt32LE(a + 52), 250_000_000, 'mtime ns')
  t.equal(b.readUInt32LE(a + 60), 0o40755, 'mode')
  t.equal(b.readUInt32LE(a + 64), 3, 'nlink')
  t.equal(b.readUInt32LE(a + 68), 7, 'uid')
  t.equal(b.readUInt32LE(a + 72), 8, 'gid')
  t.equal(b.readUInt32LE(a + 76), 0x1234, 'rdev')
  const old = encodeAttrOut(0, { ...attr, mtimeMs: -1000 })
  t.equal(old.readBigInt64LE(16 + 32), -1n, 'a time before 1970 stays negative')
  const neg = encodeEntryOut(0, 60, 0, undefined)
  t.equal(neg.readBigUInt64LE(0), 0n, 'negative entry: nodeid 0')
  t.equal(neg.readBigUInt64LE(16), 60n, 'cached for the entry timeout')
})

t.test('INIT in/out, READ in, dirents padded to 8, the resend notification', async (t) => {
  const initArgs = Buffer.alloc(64)
  initArgs.writeUInt32LE(7, 0); initArgs.writeUInt32LE(45, 4); initArgs.writeUInt32LE(131072, 8); initArgs.writeUInt32LE(0xffffffff, 12); initArgs.writeUInt32LE(3, 16)
  t.same(parseInitIn(request(Op.INIT, 0, initArgs)), { major: 7, minor: 45, maxReadahead: 131072, flags: 0xffffffff, flags2: 3 })
  const o = encodeInitOut({ minor: 40, maxReadahead: 1 << 20, flags: 0x80000001, flags2: 0, maxBackground: 64, congestionThreshold: 48, maxWrite: 131072, timeGran: 1, maxPages: 256 })
  t.same([o.readUInt32LE(0), o.readUInt32LE(4), o.readUInt32LE(12), o.readUInt16LE(16), o.readUInt16LE(18), o.readUInt32LE(20), o.readUInt32LE(24), o.readUInt16LE(28)],
    [7, 40, 0x80000001, 64, 48, 131072, 1, 256])
  const rd = Buffer.alloc(40)
  rd.writeBigUInt64LE(77n, 0); rd.writeBigUInt64LE(2n ** 34n, 8); rd.writeUInt32LE(4096, 16)
  t.same(parseReadIn(request(Op.READ, 77, rd)), { fh: 77, offset: 2 ** 34, size: 4096 })
  t.equal(direntSize(1), 32)
  t.equal(direntSize(8), 32)
  t.equal(direntSize(9), 40)
  const d = Buffer.alloc(64, 0xff)
  t.equal(writeDirent(d, 0, 3, 1, 8, Buffer.from('abc')), 32)
  t.same([d.readBigUInt64LE(0), d.readBigUInt64LE(8), d.readUInt32LE(16), d.readUInt32LE(20)], [3n, 1n, 3, 8])
  t.equal(d.toString('utf8', 24, 27), 'abc')
  t.same([...d.subarray(27, 32)], [0, 0, 0, 0, 0], 'padding zeroed')
  const n = encodeNotify(FUSE_NOTIFY_RESEND)
  t.same([n.length, n.readUInt32LE(0), n.readInt32LE(4), n.readBigUInt64LE(8)], [16, 16, 7, 0n], 'resend: unique 0, code 7, no payload')
})
