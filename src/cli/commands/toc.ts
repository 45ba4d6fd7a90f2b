import { EstargzReader } from '../../estargz/reader.js'
import { positionals, type CommandSpec, type ParsedArgs } from '../args.js'
import { BLOB_ARGS, BLOB_OPTIONS, openBlob, readerOptionsFromArgs } from '../blob-args.js'

export const spec: CommandSpec = {
  name: 'stargz toc',
  summary: 'print the TOC (stargz.index.json) of an eStargz blob',
  args: BLOB_ARGS,
  options: BLOB_OPTIONS,
}

export async function run(args: ParsedArgs): Promise<number> {
  const [blob] = positionals(args, spec, 1) as [string]
  const opened = await openBlob(blob, args)
  try {
    const reader = await EstargzReader.open(opened.source, await readerOptionsFromArgs(args, opened.tocDigest))
    process.stdout.write(JSON.stringify({ version: reader.toc.version, entries: reader.toc.entries }, null, 2) + '\n')
    return 0
  } finally {
    await opened.close()
  }
}
