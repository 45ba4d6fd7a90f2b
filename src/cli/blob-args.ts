import { readFile } from 'node:fs/promises'
import { InvalidArgumentError } from '../errors.js'
import type { ReaderOptions } from '../estargz/reader.js'
import { flagString, type OptionSpec, type ParsedArgs } from './args.js'
import { REMOTE_OPTIONS } from './remote.js'

/** Options every blob-reading command (toc, cat, verify, get-toc-digest) accepts: local or registry blobs. */
export const BLOB_OPTIONS: readonly OptionSpec[] = [
  { name: 'toc-digest', type: 'string', value: 'sha256:…', help: 'verify the TOC against this digest (default: the layer\'s toc.digest annotation)' },
  { name: 'external-toc', type: 'string', value: 'FILE', help: 'the TOC blob of a layer written in external-TOC mode (stargz convert-layer --external-toc)' },
  ...REMOTE_OPTIONS,
]

export const BLOB_ARGS = 'BLOB|REF'

export { openSourceFromArgs as openBlob } from './remote.js'

/**
 * Reader options from the blob flags: the TOC digest to check, and `--external-toc FILE` (the TOC
 * blob of a layer written in external-TOC mode, e.g. by `stargz convert-layer --external-toc`).
 */
export async function readerOptionsFromArgs(args: ParsedArgs, tocDigest: string | undefined): Promise<ReaderOptions> {
  const opts: ReaderOptions = tocDigest === undefined ? {} : { tocDigest }
  const ext = flagString(args, 'external-toc')
  if (ext !== undefined) {
    try {
      opts.externalToc = await readFile(ext)
    } catch (e) {
      throw new InvalidArgumentError(`cannot read the external TOC ${ext}: ${(e as Error).message}`, { cause: e })
    }
  }
  return opts
}
