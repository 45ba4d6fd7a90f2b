import { InvalidArgumentError } from '../../errors.js'
import { EstargzReader } from '../../estargz/reader.js'
import { parseArgs } from '../args.js'
import { blobFlagSpec, openBlob, readerOptionsFromArgs } from '../blob-args.js'

export const summary = 'print the TOC (stargz.index.json) of an eStargz blob'

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, blobFlagSpec)
  const [blob, ...extra] = args.positionals
  if (blob === undefined || extra.length > 0) throw new InvalidArgumentError('usage: stargz toc BLOB|REF [--layer N|DIGEST] [--toc-digest sha256:...] [--external-toc FILE] [--plain-http] [--insecure] [--platform P] [--hosts-dir D] [--stats]')
  const opened = await openBlob(blob, args)
  try {
    const reader = await EstargzReader.open(opened.source, await readerOptionsFromArgs(args, opened.tocDigest))
    process.stdout.write(JSON.stringify({ version: reader.toc.version, entries: reader.toc.entries }, null, 2) + '\n')
    return 0
  } finally {
    await opened.close()
  }
}
