/**
 * Entry point of a decode worker thread (started by WorkerChunkDecoder). It runs the same
 * decodeMember() as the main thread; see src/reader/worker-protocol.ts for the messages.
 */
import { parentPort } from 'node:worker_threads'
import { decodeMember, sha256Of } from './decode-member.js'
import type { WireOutcome, WorkerReply, WorkerRequest } from './worker-protocol.js'

const port = parentPort
if (port === null) throw new Error('decode-worker must run in a worker thread')

function view(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength)
}

port.on('message', (m: WorkerRequest) => {
  if (m.op === 'sha256') {
    const reply: WorkerReply = { id: m.id, op: 'sha256', hash: sha256Of(view(m.data)) }
    port.postMessage(reply)
    return
  }
  const r = decodeMember(view(m.member), m.size, m.digest, m.codec)
  if (r.kind !== 'ok') {
    const reply: WorkerReply = { id: m.id, op: 'decode', outcome: r }
    port.postMessage(reply)
    return
  }
  const data = r.data
  // Transfer the output when it owns (nearly) all of its ArrayBuffer; otherwise copy it into an
  // exact one. Never transfer a pooled or shared buffer (that would detach the pool), and never
  // ship a small view of a big allocation (the receiver would keep the whole allocation alive).
  let buf: ArrayBuffer
  if (data.byteOffset === 0 && data.length >= 4096 && data.buffer.byteLength - data.length <= 4096 && data.buffer instanceof ArrayBuffer) buf = data.buffer
  else buf = new Uint8Array(data).buffer as ArrayBuffer
  const outcome: WireOutcome = { kind: 'ok', buf, len: data.length }
  const reply: WorkerReply = { id: m.id, op: 'decode', outcome }
  port.postMessage(reply, [buf])
})
