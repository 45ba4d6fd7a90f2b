import { InvalidArgumentError } from '../../errors.js'
import { BlobReader } from '../../reader/blob-reader.js'
import { flagBool, parseArgs } from '../args.js'
import { blobFlagSpec, openBlob, readerOptionsFromArgs } from '../blob-args.js'

export const summary = 'check the TOC and every chunk of an eStargz blob (exit 0 only if all verify)'

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { values: [...blobFlagSpec.values], booleans: [...blobFlagSpec.booleans, 'allow-unverified'] })
  const [blob, ...extra] = args.positionals
  if (blob === undefined || extra.length > 0) throw new InvalidArgumentError('usage: stargz verify BLOB|REF [--layer N|DIGEST] [--toc-digest sha256:...] [--external-toc FILE] [--plain-http] [--insecure] [--platform P] [--hosts-dir D] [--stats]')
  const opened = await openBlob(blob, args)
  try {
    // Every chunk goes through ChunkReader, the path a mount reads through (no cache).
    const reader = await BlobReader.open(opened.source, await readerOptionsFromArgs(args, opened.tocDigest))
    try {
      const r = await reader.verifyAll()
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
