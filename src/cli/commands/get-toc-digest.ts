/**
 * `stargz get-toc-digest BLOB|REF`: the digest of a layer's TOC (stargz.index.json), as
 * `ctr-remote get-toc-digest` prints it — the value of the
 * `containerd.io/snapshot/stargz/toc.digest` annotation. Computed from the blob (footer → TOC →
 * sha256 of the TOC JSON), so it also works on layers that carry no annotation. With
 * --toc-digest (or an annotated registry layer) the TOC is checked against that digest too.
 */
import { EstargzReader } from '../../estargz/reader.js'
import { positionals, type CommandSpec, type ParsedArgs } from '../args.js'
import { BLOB_ARGS, BLOB_OPTIONS, openBlob } from '../blob-args.js'

export const spec: CommandSpec = {
  name: 'stargz get-toc-digest',
  summary: 'print the TOC digest of an eStargz layer (blob file or registry layer)',
  args: BLOB_ARGS,
  options: BLOB_OPTIONS,
}

export async function run(args: ParsedArgs): Promise<number> {
  const [blob] = positionals(args, spec, 1) as [string]
  const opened = await openBlob(blob, args)
  try {
    const reader = await EstargzReader.open(opened.source, opened.tocDigest === undefined ? {} : { tocDigest: opened.tocDigest })
    process.stdout.write(reader.tocDigest + '\n')
    return 0
  } finally {
    await opened.close()
  }
}
