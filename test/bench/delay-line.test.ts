import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, connect, type Socket, type Server } from 'node:net'
import { once } from 'node:events'
import { DelayLine } from '../../src/bench/link/delay-line.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** A connected socket pair over 127.0.0.1. */
async function socketPair(t: Test): Promise<[Socket, Socket]> {
  const server: Server = createServer({ allowHalfOpen: true })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const a = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  const [b] = await accepted
  t.teardown(() => { a.destroy(); b.destroy(); server.close() })
  return [a, b]
}

function collect(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = []
  s.on('data', (d: Buffer) => parts.push(d))
  return once(s, 'end').then(() => Buffer.concat(parts))
}

t.test('delivers every byte in order and then the FIN', async (t) => {
  // writer → [a1 ⇄ b1] → DelayLine → [a2 ⇄ b2] → reader
  const [writer, lineIn] = await socketPair(t)
  const [lineOut, reader] = await socketPair(t)
  new DelayLine(lineIn, lineOut, { delayMs: 3 })
  const got = collect(reader)
  const data = randomBytes(6 * 1024 * 1024 + 17)
  for (let off = 0; off < data.length; off += 100_000) writer.write(data.subarray(off, off + 100_000))
  writer.end()
  const out = await got
  t.equal(out.length, data.length)
  t.equal(sha(out), sha(data))
})

t.test('a small high-water mark pauses and resumes the source without losing bytes', async (t) => {
  const [writer, lineIn] = await socketPair(t)
  const [lineOut, reader] = await socketPair(t)
  let delivered = 0
  const line = new DelayLine(lineIn, lineOut, { delayMs: 1, highWaterBytes: 16 * 1024, onDeliver: (n) => { delivered += n } })
  // The reader starts late, so the line's destination fills up and the source must be paused.
  const data = randomBytes(3 * 1024 * 1024)
  writer.end(data)
  await new Promise((r) => setTimeout(r, 50))
  const out = await collect(reader)
  t.equal(sha(out), sha(data))
  t.equal(delivered, data.length)
  t.equal(line.queuedBytes, 0)
})

t.test('notBefore holds data back but keeps it', async (t) => {
  const [writer, lineIn] = await socketPair(t)
  const [lineOut, reader] = await socketPair(t)
  new DelayLine(lineIn, lineOut, { delayMs: 0, notBefore: performance.now() + 20 })
  const got = collect(reader)
  writer.end(Buffer.from('hello'))
  t.equal((await got).toString(), 'hello')
})

t.test('close() drops the queue and stops delivering', async (t) => {
  const [writer, lineIn] = await socketPair(t)
  const [lineOut, reader] = await socketPair(t)
  const line = new DelayLine(lineIn, lineOut, { delayMs: 10_000 })
  writer.write(Buffer.from('never'))
  await once(lineIn, 'data')
  t.equal(line.queuedBytes, 5)
  line.close()
  t.equal(line.queuedBytes, 0)
  let received = 0
  reader.on('data', (d: Buffer) => { received += d.length })
  lineOut.end()
  await once(reader, 'end')
  t.equal(received, 0)
})

t.test('rejects a negative delay', async (t) => {
  const [a, b] = await socketPair(t)
  t.throws(() => new DelayLine(a, b, { delayMs: -1 }), RangeError)
})
