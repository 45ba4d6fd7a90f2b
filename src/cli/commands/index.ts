/**
 * `stargz index`: a seekable index for plain tar+gzip layers, so they mount lazily unconverted.
 *
 *   stargz index REF [--spacing MIB] [--no-push]     index every gzip layer of REF and push each
 *                                                    index next to the image (tag sha256-<layer>.gzindex)
 *   stargz index FILE.tar.gz [--out F] [--spacing MIB]   index a local layer blob into F (FILE.gzindex)
 *   stargz index cat REF|FILE PATH [--index F] [--layer N]   one file's bytes, read through the index
 *   stargz index verify REF|FILE [--index F] [--layer N]     read every file through the index and
 *                                                    check it against its sha256 from index time
 *   stargz index copy SRC DST                        DST is a copy of SRC (skopeo copy): push SRC's
 *                                                    indexes next to DST, no layer read again
 */
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { InvalidArgumentError } from '../../errors.js'
import { FileRangeSource } from '../../estargz/file-source.js'
import { findIndex } from '../../gzindex/artifact.js'
import { copyIndexes, indexImage } from '../../gzindex/image.js'
import { buildIndex, DEFAULT_SPACING } from '../../gzindex/build.js'
import { decodeIndex, type GzIndex } from '../../gzindex/format.js'
import { GzIndexReader } from '../../gzindex/reader.js'
import { parseReference } from '../../registry/reference.js'
import { flagBool, flagInt, flagString, usageError, type CommandSpec, type ParsedArgs } from '../args.js'
import { clientFromArgs, pickLayer, REMOTE_OPTIONS } from '../remote.js'

export const spec: CommandSpec = {
  name: 'stargz index',
  summary: 'build, push and read through a seekable index of plain gzip layers',
  args: 'REF|FILE | cat REF|FILE PATH | verify REF|FILE | copy SRC DST',
  options: [
    { name: 'spacing', type: 'string', value: 'MIB', help: 'checkpoint spacing in MiB of uncompressed data (default 4)' },
    { name: 'out', type: 'string', value: 'FILE', help: 'local layer: where to write the index (default FILE.gzindex)' },
    { name: 'index', type: 'string', value: 'FILE', help: 'cat/verify: read the index from this file instead of the registry' },
    { name: 'no-push', type: 'boolean', help: 'build the indexes of REF but do not push them' },
    ...REMOTE_OPTIONS,
  ],
}

const STEP = 16 * 1024 * 1024

async function isFile(p: string): Promise<boolean> {
  try { return (await stat(p)).isFile() } catch { return false }
}

function spacingOf(args: ParsedArgs): number {
  const mib = flagInt(args, 'spacing')
  return mib === undefined ? DEFAULT_SPACING : mib << 20
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    createReadStream(path).on('data', (d) => h.update(d)).on('error', reject).on('end', () => resolve(`sha256:${h.digest('hex')}`))
  })
}

async function build(target: string, args: ParsedArgs): Promise<number> {
  const spacing = spacingOf(args)
  if (await isFile(target)) {
    const size = (await stat(target)).size
    const digest = await sha256File(target)
    const t0 = performance.now()
    const built = await buildIndex(createReadStream(target, { highWaterMark: 1 << 20 }), { layer: { digest, size }, spacing })
    const out = flagString(args, 'out') ?? `${target}.gzindex`
    await writeFile(out, built.blob)
    process.stderr.write(`stargz: ${target}: ${built.header.spans.length} spans, ${built.header.files.length} files, index ${built.blob.length} bytes (${(100 * built.blob.length / size).toFixed(2)}% of the layer), ${((performance.now() - t0) / 1000).toFixed(2)} s\n`)
    process.stdout.write(out + '\n')
    return 0
  }
  const ref = parseReference(target)
  const client = clientFromArgs(args)
  try {
    const noPush = flagBool(args, 'no-push')
    const done = await indexImage(client, ref, { spacing, noPush, log: (l) => process.stderr.write(`stargz: ${l}\n`) })
    for (const r of done) {
      const line = `${r.layer.digest} ${r.spans} spans ${r.files} files index ${r.indexBytes} bytes`
      process.stdout.write(r.pushed ? `${line} -> ${ref.registry}/${ref.repository}:${r.pushed.tag}\n` : `${line}\n`)
    }
    return 0
  } finally {
    await client.close()
  }
}

/** `stargz index copy SRC DST`: DST is a copy of SRC (skopeo copy); push SRC's indexes beside it. */
async function copy(src: string, dst: string, args: ParsedArgs): Promise<number> {
  const client = clientFromArgs(args)
  try {
    const d = parseReference(dst)
    for (const p of await copyIndexes(client, src, d, (l) => process.stderr.write(`stargz: ${l}\n`))) {
      process.stdout.write(`${p.blobDigest} -> ${d.registry}/${d.repository}:${p.tag}\n`)
    }
    return 0
  } finally {
    await client.close()
  }
}

interface Opened { reader: GzIndexReader; close(): Promise<void> }

async function openReader(target: string, args: ParsedArgs): Promise<Opened> {
  const indexPath = flagString(args, 'index')
  if (await isFile(target)) {
    const source = await FileRangeSource.open(target)
    try {
      const blob = await readFile(indexPath ?? `${target}.gzindex`)
      const index = decodeIndex(blob, { digest: await sha256File(target), size: source.size })
      return { reader: new GzIndexReader(index, source), close: () => source.close() }
    } catch (e) {
      await source.close()
      throw e
    }
  }
  const ref = parseReference(target)
  const client = clientFromArgs(args)
  try {
    const image = await client.resolve(ref)
    const layer = pickLayer(image, flagString(args, 'layer'))
    let index: GzIndex
    if (indexPath !== undefined) index = decodeIndex(await readFile(indexPath), layer)
    else {
      const found = await findIndex(client, ref, layer)
      if (!found) throw new InvalidArgumentError(`no gzip index published for layer ${layer.digest} of ${target}`)
      index = found.index
    }
    const blob = await client.blob(ref, layer.digest, layer.size)
    return {
      reader: new GzIndexReader(index, blob),
      close: async () => {
        if (flagBool(args, 'stats')) process.stderr.write(`stargz: layer ${layer.digest}: fetched ${blob.stats().bytesFetched} of ${layer.size} bytes\n`)
        await blob.close()
        await client.close()
      },
    }
  } catch (e) {
    await client.close()
    throw e
  }
}

async function cat(target: string, path: string, args: ParsedArgs): Promise<number> {
  const { reader, close } = await openReader(target, args)
  try {
    const f = reader.lookup(path)
    if (!f) throw new InvalidArgumentError(`no file ${JSON.stringify(path)} in ${target}`)
    if (f.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(path)} is a ${f.type}, not a regular file`)
    const h = createHash('sha256')
    for (let off = 0; off < f.size; off += STEP) {
      const data = await reader.read(f, off, STEP)
      h.update(data)
      if (!process.stdout.write(data)) await once(process.stdout, 'drain')
    }
    // Every span was verified already; the whole-file digest is a second check once at the end.
    if (h.digest('hex') !== f.sha256) throw new InvalidArgumentError(`${JSON.stringify(path)}: content does not match its sha256 from index time`)
    return 0
  } finally {
    await close()
  }
}

async function verify(target: string, args: ParsedArgs): Promise<number> {
  const { reader, close } = await openReader(target, args)
  try {
    let files = 0
    let bytes = 0
    for (const f of reader.index.files) {
      if (f.type !== 'reg') continue
      await reader.readVerified(f)
      files++
      bytes += f.size
    }
    process.stdout.write(`ok: ${files} files, ${bytes} bytes verified through ${reader.index.spans.length} spans\n`)
    return 0
  } finally {
    await close()
  }
}

export async function run(args: ParsedArgs): Promise<number> {
  const [a, b, c, ...extra] = args.positionals
  const usage = 'usage: stargz index REF|FILE [--spacing MIB] [--no-push] [--out F] | index cat REF|FILE PATH [--index F] [--layer N] | index verify REF|FILE [--index F] [--layer N] | index copy SRC DST'
  if (a === 'cat' && b !== undefined && c !== undefined && extra.length === 0) return cat(b, c, args)
  if (a === 'verify' && b !== undefined && c === undefined) return verify(b, args)
  if (a === 'copy' && b !== undefined && c !== undefined && extra.length === 0) return copy(b, c, args)
  if (a !== undefined && a !== 'cat' && a !== 'verify' && a !== 'copy' && b === undefined) return build(a, args)
  throw usageError(usage)
}
