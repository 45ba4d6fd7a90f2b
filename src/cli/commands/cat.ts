import { once } from 'node:events'
import { InvalidArgumentError } from '../../errors.js'
import { EstargzReader } from '../../estargz/reader.js'
import { positionals, type CommandSpec, type ParsedArgs } from '../args.js'
import { BLOB_ARGS, BLOB_OPTIONS, openBlob, readerOptionsFromArgs } from '../blob-args.js'
import { ttyProgress } from '../progress.js'

export const spec: CommandSpec = {
  name: 'stargz cat',
  summary: "write one file's bytes from an eStargz blob to stdout",
  args: `${BLOB_ARGS} PATH`,
  options: BLOB_OPTIONS,
}

/** Bytes per read: large enough to amortise a fetch, small enough to stream big files. */
const STEP = 16 * 1024 * 1024

export async function run(args: ParsedArgs): Promise<number> {
  const [blob, path] = positionals(args, spec, 2) as [string, string]
  const opened = await openBlob(blob, args)
  try {
    const reader = await EstargzReader.open(opened.source, await readerOptionsFromArgs(args, opened.tocDigest))
    const entry = reader.index.resolve(path.replace(/^\/+/, ''))
    if (!entry) throw new InvalidArgumentError(`no file ${JSON.stringify(path)} in ${blob}`)
    if (entry.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(path)} is a ${entry.type}, not a regular file`)
    const size = entry.size ?? 0
    let written = 0
    const progress = ttyProgress(`stargz cat ${entry.name}`, opened.layer ? size : 0, () => written)
    try {
      for (let off = 0; off < size; off += STEP) {
        const data = await reader.readFile(entry.name, off, STEP)
        if (!process.stdout.write(data)) await once(process.stdout, 'drain')
        written += data.length
      }
    } finally {
      progress.stop()
    }
    return 0
  } finally {
    await opened.close()
  }
}
