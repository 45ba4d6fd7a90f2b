/**
 * A benchmark image in eStargz form: every layer of the original (gzip) OCI layout converted with
 * convertLayer, written as a new OCI layout with the eStargz diff_ids in the config and the TOC
 * digest + uncompressed size annotations on each layer descriptor (what stargzd needs to mount a
 * layer lazily).
 *
 * (image/oci-image.ts's LayerEncoder hook cannot do this: the config's diff_ids there are the
 * sha256 of the input tars, while an eStargz blob decompresses to a different tar — entries
 * reordered, landmark and TOC entries added — so containerd's unpack would reject them.)
 *
 * Cached under <fixtureDir>/bench-estargz/<key>/, key = sha256 of: the source manifest digest (it
 * names every input layer digest), chunk size, compression level, the prioritized files per layer,
 * and the writer's sources (src/estargz, src/tar) so a writer change re-converts. Built in a
 * `.partial-*` sibling and renamed into place.
 */
import { publishDir } from './publish-dir.js'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { convertLayer } from '../estargz/writer.js'
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from '../estargz/types.js'
import {
  MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST, type BuiltLayer, type BuiltLayout, type Descriptor,
} from './image/oci-image.js'

export interface EstargzLayoutOptions {
  /** Per layer (0 = bottom): paths to put first, in order. Missing or empty: none. */
  prioritizedFiles?: string[][]
  chunkSize?: number
  compressionLevel?: number
  fixtureDir: string
  /** Name for logs and the tag inside the layout. */
  tag: string
  log?: (msg: string) => void
}

export interface EstargzLayout extends BuiltLayout {
  /** Per layer: TOC digest and prioritized paths that the layer did not have. */
  estargz: Array<{ tocDigest: string; prioritized: number; missingPrioritizedFiles: string[] }>
  cached: boolean
}

const FORMAT = 1

let writerHash: string | undefined
async function writerSourcesHash(): Promise<string> {
  if (writerHash) return writerHash
  const h = createHash('sha256')
  for (const sub of ['../estargz/', '../tar/']) {
    const dir = fileURLToPath(new URL(sub, import.meta.url))
    for (const f of (await readdir(dir)).filter((n) => /\.(ts|js)$/.test(n)).sort()) {
      h.update(sub + f).update(await readFile(join(dir, f)))
    }
  }
  writerHash = h.digest('hex')
  return writerHash
}

function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

async function putBlob(dir: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(data)
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), data)
  return { digest, size: data.length }
}

export async function estargzLayout(src: BuiltLayout, opts: EstargzLayoutOptions): Promise<EstargzLayout> {
  const log = opts.log ?? (() => undefined)
  const prioritized = src.layers.map((_, i) => opts.prioritizedFiles?.[i] ?? [])
  const keyDoc = JSON.stringify({
    format: FORMAT, source: src.manifest.digest, chunkSize: opts.chunkSize ?? null, level: opts.compressionLevel ?? null,
    prioritized, writer: await writerSourcesHash(),
  })
  const key = createHash('sha256').update(keyDoc).digest('hex').slice(0, 16)
  const root = join(opts.fixtureDir, 'bench-estargz')
  const final = join(root, `${opts.tag}-${key}`)
  const metaPath = (d: string): string => join(d, 'estargz-image.json')
  if (existsSync(metaPath(final))) {
    const m = JSON.parse(await readFile(metaPath(final), 'utf8')) as EstargzLayout
    log(`${opts.tag}: cached at ${final}`)
    return { ...m, dir: join(final, 'oci'), cached: true }
  }

  const partial = join(root, `.partial-${opts.tag}-${randomBytes(6).toString('hex')}`)
  const oci = join(partial, 'oci')
  const blobs = join(oci, 'blobs', 'sha256')
  await mkdir(blobs, { recursive: true })
  await mkdir(join(partial, 'tmp'), { recursive: true })
  try {
    const layers: BuiltLayer[] = []
    const info: EstargzLayout['estargz'] = []
    for (const [i, l] of src.layers.entries()) {
      const t0 = performance.now()
      const tmp = join(blobs, `.partial-${i}`)
      const out = createWriteStream(tmp)
      const closed = new Promise<void>((resolve, reject) => { out.once('close', resolve); out.once('error', reject) })
      const r = await convertLayer(createReadStream(join(src.dir, 'blobs', 'sha256', l.digest.slice(7))), out, {
        prioritizedFiles: prioritized[i] ?? [],
        ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
        ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
        tmpDir: join(partial, 'tmp'),
      })
      await closed
      await rename(tmp, join(blobs, r.digest.slice(7)))
      layers.push({
        mediaType: MEDIA_TYPE_LAYER_GZIP,
        digest: r.digest,
        size: r.size,
        annotations: { [TOC_DIGEST_ANNOTATION]: r.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(r.uncompressedSize) },
        diffId: r.diffID,
        uncompressedSize: r.uncompressedSize,
      })
      info.push({ tocDigest: r.tocDigest, prioritized: (prioritized[i] ?? []).length, missingPrioritizedFiles: r.missingPrioritizedFiles })
      log(`${opts.tag}: layer ${i} ${(l.size / 1e6).toFixed(1)} MB gzip → ${(r.size / 1e6).toFixed(1)} MB eStargz` +
        `${(prioritized[i] ?? []).length > 0 ? `, ${(prioritized[i] ?? []).length} prioritized files` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
    // The config: the source's, with the eStargz diff_ids.
    const config = JSON.parse(await readFile(join(src.dir, 'blobs', 'sha256', src.config.digest.slice(7)), 'utf8')) as { rootfs: { diff_ids: string[] } }
    config.rootfs.diff_ids = layers.map((l) => l.diffId)
    const configDesc: Descriptor = { mediaType: src.config.mediaType, ...(await putBlob(oci, Buffer.from(JSON.stringify(config)))) }
    const manifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_MANIFEST,
      config: configDesc,
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, annotations: l.annotations })),
    }
    const manifestDesc: Descriptor = { mediaType: MEDIA_TYPE_MANIFEST, ...(await putBlob(oci, Buffer.from(JSON.stringify(manifest)))) }
    await writeFile(join(oci, 'index.json'), JSON.stringify({
      schemaVersion: 2, mediaType: MEDIA_TYPE_INDEX,
      manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': opts.tag } }],
    }))
    await writeFile(join(oci, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    await rm(join(partial, 'tmp'), { recursive: true, force: true })
    const meta: EstargzLayout = { dir: '', tag: opts.tag, manifest: manifestDesc, config: configDesc, layers, estargz: info, cached: false }
    await writeFile(metaPath(partial), JSON.stringify(meta, null, 2) + '\n')
    await publishDir(partial, final, metaPath(final))
    return { ...meta, dir: join(final, 'oci') }
  } catch (e) {
    await rm(partial, { recursive: true, force: true })
    throw e
  }
}
