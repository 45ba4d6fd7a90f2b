import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirCache } from '../../cache/dir-cache.js'
import { InvalidArgumentError } from '../../errors.js'
import { BlobReader } from '../../reader/blob-reader.js'
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
  let spill: { dir: string; cache: DirCache } | undefined
  try {
    const readerOpts = await readerOptionsFromArgs(args, opened.tocDigest)
    const probe = await BlobReader.open(opened.source, readerOpts)
    let reader = probe
    const entry = reader.index.resolve(path.replace(/^\/+/, ''))
    if (!entry) throw new InvalidArgumentError(`no file ${JSON.stringify(path)} in ${blob}`)
    if (entry.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(path)} is a ${entry.type}, not a regular file`)
    // The same path a mount reads through, with no cache; except that a chunk too big to hold
    // in memory is spilled (verified) to a private temp dir once, rather than streamed again
    // for every STEP of it.
    if (reader.index.chunks(entry.name).some((r) => reader.chunks.isBig(r))) {
      const dir = await mkdtemp(join(tmpdir(), 'stargz-cat-'))
      spill = { dir, cache: await DirCache.open({ root: dir, maxBytes: Number.MAX_SAFE_INTEGER }) }
      await probe.close()
      reader = await BlobReader.open(opened.source, { ...readerOpts, cache: spill.cache })
    }
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
      await reader.close()
    }
    return 0
  } finally {
    if (spill) {
      await spill.cache.close()
      await rm(spill.dir, { recursive: true, force: true })
    }
    await opened.close()
  }
}
