import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirCache } from '../../cache/dir-cache.js'
import { InvalidArgumentError } from '../../errors.js'
import { BlobReader } from '../../reader/blob-reader.js'
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
    try {
      const size = entry.size ?? 0
      for (let off = 0; off < size; off += STEP) {
        const data = await reader.readFile(entry.name, off, STEP)
        if (!process.stdout.write(data)) await once(process.stdout, 'drain')
      }
    } finally {
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
