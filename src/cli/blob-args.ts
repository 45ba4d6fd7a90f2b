import type { OptionSpec } from './args.js'
import { REMOTE_OPTIONS } from './remote.js'

/** Options every blob-reading command (toc, cat, verify, get-toc-digest) accepts: local or registry blobs. */
export const BLOB_OPTIONS: readonly OptionSpec[] = [
  { name: 'toc-digest', type: 'string', value: 'sha256:…', help: 'verify the TOC against this digest (default: the layer\'s toc.digest annotation)' },
  ...REMOTE_OPTIONS,
]

export const BLOB_ARGS = 'BLOB|REF'

export { openSourceFromArgs as openBlob } from './remote.js'
