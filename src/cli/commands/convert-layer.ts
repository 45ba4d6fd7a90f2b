/**
 * `stargz convert-layer IN OUT [--chunk-size N] [--prioritized FILE] [--legacy]`
 *
 * Converts a tar / tar.gz layer into an eStargz blob. OUT is written through a temporary file in
 * the same directory and renamed into place, so a failed conversion leaves no OUT behind.
 * Prints {"digest","diffID","tocDigest","size"} as JSON on stdout.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { InvalidArgumentError, NotFoundError } from '../../errors.js'
import { convertLayer } from '../../estargz/writer.js'
import { flagBool, flagInt, flagString, positionals, UsageError, type CommandSpec, type ParsedArgs } from '../args.js'

export const spec: CommandSpec = {
  name: 'stargz convert-layer',
  summary: 'convert a tar / tar.gz layer into an eStargz blob',
  args: 'IN OUT',
  options: [
    { name: 'chunk-size', type: 'string', value: 'N', help: 'bytes of file data per chunk (default 4 MiB)' },
    { name: 'prioritized', type: 'string', value: 'FILE', help: 'file listing paths (one per line) to put first, before the prefetch landmark' },
    { name: 'legacy', type: 'boolean', help: 'write the legacy stargz footer instead of the eStargz one' },
    { name: 'zstdchunked', type: 'boolean', help: 'write zstd:chunked instead of gzip eStargz' },
    { name: 'external-toc', type: 'string', value: 'TOC-OUT', help: 'write the TOC to this file instead of into the layer (gzip eStargz only)' },
  ],
  notes: 'Prints {"digest","diffID","tocDigest","size"} as JSON on stdout.',
}

async function readPrioritized(path: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`prioritized file list ${path} does not exist`, { cause: e })
    throw new InvalidArgumentError(`cannot read prioritized file list ${path}: ${(e as Error).message}`, { cause: e })
  }
  return text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '')
}

async function checkInput(path: string): Promise<void> {
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new InvalidArgumentError(`input layer ${path} is not a regular file`)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`input layer ${path} does not exist`, { cause: e })
    throw e
  }
}

export async function run(args: ParsedArgs): Promise<number> {
  const [inPath, outPath] = positionals(args, spec, 2) as [string, string]
  const chunkSize = flagInt(args, 'chunk-size')
  const prioritizedPath = flagString(args, 'prioritized')
  const externalTocPath = flagString(args, 'external-toc')
  const zstd = flagBool(args, 'zstdchunked')
  if (externalTocPath !== undefined && (zstd || flagBool(args, 'legacy'))) throw new UsageError('--external-toc writes gzip eStargz; it cannot be combined with --zstdchunked or --legacy')
  const prioritizedFiles = prioritizedPath === undefined ? undefined : await readPrioritized(prioritizedPath)
  await checkInput(inPath)

  const tmp = join(dirname(outPath), `.${basename(outPath)}.tmp-${process.pid}-${Date.now().toString(36)}`)
  const out = createWriteStream(tmp, { flags: 'wx', mode: 0o644 })
  let renamed = false
  try {
    const result = await convertLayer(createReadStream(inPath, { highWaterMark: 1 << 20 }), out, {
      ...(chunkSize !== undefined ? { chunkSize } : {}),
      ...(prioritizedFiles !== undefined ? { prioritizedFiles } : {}),
      legacyFooter: flagBool(args, 'legacy'),
      ...(zstd ? { zstdChunked: true } : {}),
      ...(externalTocPath !== undefined ? { externalToc: true } : {}),
      onWarning: (m) => process.stderr.write(`stargz: warning: ${m}\n`),
    })
    if (!out.closed) await new Promise<void>((resolve, reject) => { out.once('close', resolve); out.once('error', reject) })
    // The TOC blob first: a layer without its TOC next to it is not readable.
    if (externalTocPath !== undefined && result.externalToc) await writeFile(externalTocPath, result.externalToc, { mode: 0o644 })
    await rename(tmp, outPath)
    renamed = true
    const { digest, diffID, tocDigest, size } = result
    process.stdout.write(JSON.stringify({ digest, diffID, tocDigest, size }) + '\n')
    return 0
  } finally {
    if (!renamed) {
      out.destroy()
      await unlink(tmp).catch(() => { /* never created or already gone */ })
    }
  }
}
