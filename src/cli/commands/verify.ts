import { BlobReader } from '../../reader/blob-reader.js'
import { flagBool, positionals, type CommandSpec, type ParsedArgs } from '../args.js'
import { BLOB_ARGS, BLOB_OPTIONS, openBlob, readerOptionsFromArgs } from '../blob-args.js'
import { ttyProgress } from '../progress.js'

export const spec: CommandSpec = {
  name: 'stargz verify',
  summary: 'check the TOC and every chunk of an eStargz blob (exit 0 only if all verify)',
  args: BLOB_ARGS,
  options: [
    ...BLOB_OPTIONS,
    { name: 'allow-unverified', type: 'boolean', help: 'exit 0 even when some chunks have no digest in the TOC' },
  ],
}

export async function run(args: ParsedArgs): Promise<number> {
  const [blob] = positionals(args, spec, 1) as [string]
  const opened = await openBlob(blob, args)
  try {
    // Every chunk goes through ChunkReader, the path a mount reads through (no cache).
    const reader = await BlobReader.open(opened.source, await readerOptionsFromArgs(args, opened.tocDigest))
    try {
      const progress = ttyProgress('stargz verify', opened.layer ? opened.source.size : 0, () => opened.stats().bytesFetched)
      let r: Awaited<ReturnType<typeof reader.verifyAll>>
      try {
        r = await reader.verifyAll()
      } finally {
        progress.stop()
      }
      const out = {
        tocDigest: reader.tocDigest,
        tocDigestVerified: opened.tocDigest !== undefined,
        footer: reader.footer.kind,
        entries: reader.toc.entries.length,
        files: r.files,
        chunks: r.chunks,
        bytes: r.bytes,
        unverifiedChunks: r.unverified,
      }
      process.stdout.write(JSON.stringify(out) + '\n')
      if (r.unverified > 0 && !flagBool(args, 'allow-unverified')) {
        process.stderr.write(`stargz: ${r.unverified} chunk(s) have no digest in the TOC and could not be verified\n`)
        return 1
      }
      return 0
    } finally {
      await reader.close()
    }
  } finally {
    await opened.close()
  }
}
