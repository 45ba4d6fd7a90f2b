/**
 * The per-layer state file the reference serves at /.stargz-snapshotter/<digest>.json:
 *
 *   {"digest":"sha256:…","size":N,"fetchedSize":N,"fetchedPercent":F[,"error":"…"]}
 *
 * followed by spaces up to STATE_FILE_SIZE - 1 bytes and a newline. The fixed size matters:
 * attributes are cached by the kernel for an hour (the layer is immutable), and a size that
 * grew since the last getattr would make the kernel cut the JSON short. Content freshness comes
 * from `auto_cache` (see mount-options.ts): the file's mtime changes on every getattr.
 */
import type { LayerState } from '../layer/types.js'

export const STATE_DIR = '.stargz-snapshotter'
export const STATE_FILE_SIZE = 1024

export function stateFileName(digest: string): string {
  return `${digest}.json`
}

export function renderState(state: LayerState, error: string | undefined): Buffer {
  const base = { digest: state.digest, size: state.size, fetchedSize: state.fetchedSize, fetchedPercent: state.fetchedPercent }
  let json = JSON.stringify(error === undefined ? base : { ...base, error })
  if (Buffer.byteLength(json) > STATE_FILE_SIZE - 1) {
    // Only the error message can be long; shorten it rather than break the JSON.
    const room = Math.max(0, STATE_FILE_SIZE - 1 - Buffer.byteLength(JSON.stringify({ ...base, error: '' })) - 8)
    json = JSON.stringify({ ...base, error: (error ?? '').slice(0, Math.floor(room / 6)) })
  }
  const out = Buffer.alloc(STATE_FILE_SIZE, 0x20)
  out.write(json, 0, 'utf8')
  out[STATE_FILE_SIZE - 1] = 0x0a
  return out
}
