import type { RangeSource } from '../estargz/types.js'
import { FileRangeSource } from './source.js'
import type { ParsedArgs } from './args.js'
import { flagString } from './args.js'

/** Flags every blob-reading command accepts (remote ones are added by src/cli/remote.ts). */
export const blobFlagSpec = { values: ['toc-digest'], booleans: [] as string[] }

export interface OpenedBlob {
  source: RangeSource
  tocDigest: string | undefined
  close(): Promise<void>
  stats(): { bytesFetched: number; requests: number } | undefined
}

/** Open BLOB (a local file path) with its expected TOC digest from --toc-digest. */
export async function openBlob(positional: string, args: ParsedArgs): Promise<OpenedBlob> {
  const source = await FileRangeSource.open(positional)
  return {
    source,
    tocDigest: flagString(args, 'toc-digest'),
    close: () => source.close(),
    stats: () => undefined,
  }
}
