/**
 * Source of the decode worker. It is evaluated from a string (Worker `eval: true`) so the same
 * code runs under tsx, tap and the compiled build without resolving a second entry file.
 *
 * Messages in:  {id, op: 'decode', codec?: 'gzip'|'zstd', member: Uint8Array, size, cap, digest?}
 *               {id, op: 'sha256', data: Uint8Array}
 * Messages out: {id, ok: true, buf: ArrayBuffer, len}      decoded and verified bytes
 *               {id, hash}                                  sha256 result
 *               {id, mismatch: 'sha256:…'}                  bytes did not match `digest`
 *               {id, short: n}                              member inflated to only n bytes
 *               {id, tooLarge: true}                        output passed `cap`; caller streams it
 *               {id, error: message}                        not gzip, or damaged
 */
import { ZSTD_BINDING_PATH, ZSTD_DECODE_SOURCE } from '../estargz/zstd-codec.js'

export const WORKER_SOURCE = String.raw`
'use strict'
const { parentPort } = require('node:worker_threads')
const zlib = require('node:zlib')
const crypto = require('node:crypto')

function view(u8) { return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength) }
${ZSTD_DECODE_SOURCE}
let zstd
// zstd:chunked members: decoded to exactly the chunk (src/estargz/zstd-codec.ts); loaded on first use.
function zstdDecode(member, size) {
  zstd ??= makeZstdDecoder(require(${JSON.stringify(ZSTD_BINDING_PATH)}))
  return zstd.decodePrefix(member, size)
}

parentPort.on('message', (m) => {
  if (m.op === 'sha256') {
    parentPort.postMessage({ id: m.id, hash: 'sha256:' + crypto.createHash('sha256').update(view(m.data)).digest('hex') })
    return
  }
  let out
  try {
    // An output buffer sized to the chunk (plus room for the tar padding and next header that
    // share the member) lets zlib write in one piece instead of growing and concatenating.
    if (m.codec === 'zstd') {
      out = zstdDecode(view(m.member), m.size)
      if (typeof out === 'number') { parentPort.postMessage({ id: m.id, short: out }); return }
    } else out = zlib.gunzipSync(view(m.member), { maxOutputLength: m.cap, chunkSize: Math.max(64, Math.min(m.cap, m.size + 4096)) })
  } catch (e) {
    if (e && (e.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError)) parentPort.postMessage({ id: m.id, tooLarge: true })
    else parentPort.postMessage({ id: m.id, error: String(e && e.message || e) })
    return
  }
  if (out.length < m.size) { parentPort.postMessage({ id: m.id, short: out.length }); return }
  const data = out.subarray(0, m.size)
  if (m.digest) {
    const actual = 'sha256:' + crypto.createHash('sha256').update(data).digest('hex')
    if (actual !== m.digest) { parentPort.postMessage({ id: m.id, mismatch: actual }); return }
  }
  // Transfer instead of copying when the bytes own (nearly) their whole ArrayBuffer; small or
  // pooled buffers are copied into a fresh one, never transferred (that would detach the pool).
  let ab
  if (data.byteOffset === 0 && data.length >= 4096 && data.buffer.byteLength - data.length <= 65536) ab = data.buffer
  else ab = new Uint8Array(data).buffer
  parentPort.postMessage({ id: m.id, ok: true, buf: ab, len: data.length }, [ab])
})
`
