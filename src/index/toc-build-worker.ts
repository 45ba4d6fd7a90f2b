/**
 * Entry point of a TOC build worker thread (started by TocBuildPool): the same buildCompact()
 * as the inline path, with the budget asked of the main thread once the JSON's size is known.
 * Messages: toc-build-protocol.ts. The index is built without a budget here (the main thread
 * accounts it when it opens the buffer) but with the per-layer bound, so its LimitError is the
 * inline one.
 */
import { parentPort } from 'node:worker_threads'
import type { IndexLimits } from './compact-index.js'
import { toWire, type TocBuildMessage, type TocBuildReply } from './toc-build-protocol.js'
import { buildCompact } from './toc-build.js'

const port = parentPort
if (port === null) throw new Error('toc-build-worker must run in a worker thread')

/** Budget answers awaited, by build id. */
const waiting = new Map<number, { resolve: () => void; reject: (e: unknown) => void }>()

/** The main thread refused the budget: it reports its own error; this one is never seen. */
const STOPPED = new Error('budget refused on the main thread')

function send(reply: TocBuildReply, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(reply, transfer)
}

async function build(m: Extract<TocBuildMessage, { op: 'build' }>): Promise<void> {
  try {
    const member = Buffer.from(m.member.buffer, m.member.byteOffset, m.member.byteLength)
    const reserve = (jsonBytes: number): Promise<void> => new Promise<void>((resolve, reject) => {
      waiting.set(m.id, { resolve, reject })
      send({ id: m.id, op: 'reserve', jsonBytes })
    })
    const limits: IndexLimits = { what: m.what }
    if (m.maxIndexBytes !== undefined) limits.maxBytes = m.maxIndexBytes
    const out = await buildCompact({ gzipMember: member }, m.footer, m.limits, reserve, m.tocDigest, limits)
    const bytes = out.index.bytes()
    // Transfer the index when it owns its ArrayBuffer (CompactIndex.build allocates it whole);
    // otherwise copy it into an exact one. Never transfer a pooled buffer.
    let buf: ArrayBuffer
    if (bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length && bytes.buffer instanceof ArrayBuffer) buf = bytes.buffer
    else buf = new Uint8Array(bytes).buffer as ArrayBuffer
    send({ id: m.id, op: 'done', index: buf, length: bytes.length, tocDigest: out.tocDigest, jsonBytes: out.jsonBytes }, [buf])
  } catch (e) {
    send({ id: m.id, op: 'failed', error: toWire(e) })
  } finally {
    waiting.delete(m.id)
  }
}

port.on('message', (m: TocBuildMessage) => {
  if (m.op === 'build') {
    void build(m)
    return
  }
  const w = waiting.get(m.id)
  waiting.delete(m.id)
  if (w === undefined) return
  if (m.ok) w.resolve()
  else w.reject(STOPPED)
})
