import { remoteFlagSpec } from './remote.js'

/** Flags every blob-reading command (toc, cat, verify) accepts: local or registry blobs. */
export const blobFlagSpec = {
  values: ['toc-digest', ...remoteFlagSpec.values],
  booleans: [...remoteFlagSpec.booleans],
}

export { openSourceFromArgs as openBlob } from './remote.js'
