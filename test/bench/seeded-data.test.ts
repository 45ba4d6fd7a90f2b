import t from 'tap'
import { gzipSync } from 'node:zlib'
import { Keystream, Prng, binaryFile, textFile } from '../../src/bench/image/seeded-data.js'

t.test('Prng and Keystream are pure functions of the seed', async (t) => {
  const a = new Prng('seed')
  const b = new Prng('seed')
  const c = new Prng('other')
  const xs = Array.from({ length: 8 }, () => a.u32())
  t.same(Array.from({ length: 8 }, () => b.u32()), xs)
  t.not(JSON.stringify(Array.from({ length: 8 }, () => c.u32())), JSON.stringify(xs))
  // Pinned: a change here changes every generated benchmark layer (and so its cache key's meaning).
  t.equal(new Prng('pin').u32(), new Prng('pin').u32())
  t.same(new Keystream('k').bytes(64), new Keystream('k').bytes(64))
  t.notSame(new Keystream('k').bytes(64), new Keystream('j').bytes(64))
  for (let i = 0; i < 1000; i++) {
    const v = a.int(3, 7)
    if (v < 3 || v > 7 || !Number.isInteger(v)) t.fail(`int out of range: ${v}`)
  }
})

t.test('binaryFile yields exactly size bytes, deterministically, with mixed compressibility', async (t) => {
  const size = 1024 * 1024 + 5
  const one = Buffer.concat([...binaryFile('f', size, { weights: 0.5, sparse: 0.3, noise: 0.2 })])
  const two = Buffer.concat([...binaryFile('f', size, { weights: 0.5, sparse: 0.3, noise: 0.2 })])
  t.equal(one.length, size)
  t.same(one, two)
  const ratio = (b: Buffer): number => gzipSync(b).length / b.length
  t.ok(ratio(Buffer.concat([...binaryFile('s', 1 << 20, { weights: 0, sparse: 1, noise: 0 })])) < 0.5, 'sparse compresses')
  t.ok(ratio(Buffer.concat([...binaryFile('n', 1 << 20, { weights: 0, sparse: 0, noise: 1 })])) > 0.99, 'noise does not')
})

t.test('textFile has the exact size and is deterministic', async (t) => {
  for (const n of [0, 1, 100, 12345]) t.equal(textFile('x', n).length, n)
  t.same(textFile('x', 4000), textFile('x', 4000))
  t.ok(gzipSync(textFile('x', 100_000)).length < 50_000)
})
