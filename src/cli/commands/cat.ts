import { once } from 'node:events'
import { InvalidArgumentError } from '../../errors.js'
import { EstargzReader } from '../../estargz/reader.js'
import { parseArgs } from '../args.js'
import { blobFlagSpec, openBlob, readerOptionsFromArgs } from '../blob-args.js'

export const summary = "write one file's bytes from an eStargz blob to stdout"

/** Bytes per read: large enough to amortise a fetch, small enough to stream big files. */
const STEP = 16 * 1024 * 1024

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, blobFlagSpec)
  const [blob, path, ...extra] = args.positionals
  if (blob === undefined || path === undefined || extra.length > 0) {
    throw new InvalidArgumentError('usage: stargz cat BLOB|REF PATH [--layer N|DIGEST] [--toc-digest sha256:...] [--external-toc FILE] [--plain-http] [--insecure] [--platform P] [--hosts-dir D] [--stats]')
  }
  const opened = await openBlob(blob, args)
  try {
    const reader = await EstargzReader.open(opened.source, await readerOptionsFromArgs(args, opened.tocDigest))
    const entry = reader.index.resolve(path.replace(/^\/+/, ''))
    if (!entry) throw new InvalidArgumentError(`no file ${JSON.stringify(path)} in ${blob}`)
    if (entry.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(path)} is a ${entry.type}, not a regular file`)
    const size = entry.size ?? 0
    for (let off = 0; off < size; off += STEP) {
      const data = await reader.readFile(entry.name, off, STEP)
      if (!process.stdout.write(data)) await once(process.stdout, 'drain')
    }
    return 0
  } finally {
    await opened.close()
  }
}
