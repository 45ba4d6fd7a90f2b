/**
 * External-TOC eStargz (the reference's `--estargz-external-toc`, estargz/externaltoc): the layer
 * blob holds the gzip members as usual but no TOC; its footer only says so. The TOC (a gzip member
 * with the `stargz.index.json` tar entry, as in eStargz) is a layer of a separate image, by default
 * `<image ref>-esgztoc`, whose manifest names the eStargz layer it belongs to in the annotation
 * `containerd.io/snapshot/stargz/layer.digest`. The `toc.digest` annotation on the eStargz layer is
 * unchanged: sha256 of the TOC JSON.
 *
 * Footer (46 bytes): an empty gzip member whose extra field is
 *   0   1f 8b 08 04 00000000 00 ff   gzip header, FEXTRA, MTIME 0, OS unknown
 *   10  15 00                        XLEN = 21
 *   12  'S' 'G' 11 00                subfield id "SG", length 17
 *   16  "STARGZEXTERNALTOC"
 *   33  01 00 00 ff ff               empty final stored deflate block
 *   38  00000000 00000000            CRC32 and ISIZE of nothing
 */
export const EXTERNAL_TOC_FOOTER_SIZE = 46
export const EXTERNAL_TOC_MAGIC = 'STARGZEXTERNALTOC'
/** Annotation on a TOC image's layer naming the eStargz layer the TOC describes. */
export const EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/layer.digest'
/** Where the reference puts the TOC image: the layer's image reference with this appended. */
export const EXTERNAL_TOC_REF_SUFFIX = '-esgztoc'

/** True when the blob's last 46 bytes are the external-TOC footer. */
export function hasExternalTocFooter(tail: Buffer): boolean {
  if (tail.length < EXTERNAL_TOC_FOOTER_SIZE) return false
  const f = tail.subarray(tail.length - EXTERNAL_TOC_FOOTER_SIZE)
  return f[0] === 0x1f && f[1] === 0x8b && f[2] === 0x08 && ((f[3] ?? 0) & 0x04) !== 0 &&
    f.readUInt16LE(10) === 4 + EXTERNAL_TOC_MAGIC.length && f[12] === 0x53 && f[13] === 0x47 &&
    f.readUInt16LE(14) === EXTERNAL_TOC_MAGIC.length && f.toString('latin1', 16, 16 + EXTERNAL_TOC_MAGIC.length) === EXTERNAL_TOC_MAGIC
}

/** The 46 footer bytes (writer side). */
export function externalTocFooterBytes(): Buffer {
  const extra = Buffer.concat([Buffer.from([0x53, 0x47, EXTERNAL_TOC_MAGIC.length, 0x00]), Buffer.from(EXTERNAL_TOC_MAGIC, 'latin1')])
  const out = Buffer.alloc(EXTERNAL_TOC_FOOTER_SIZE)
  out[0] = 0x1f; out[1] = 0x8b; out[2] = 0x08; out[3] = 0x04
  out[9] = 0xff
  out.writeUInt16LE(extra.length, 10)
  extra.copy(out, 12)
  let p = 12 + extra.length
  // Empty final stored block; CRC32 and ISIZE of nothing stay zero.
  out[p++] = 0x01; out[p++] = 0x00; out[p++] = 0x00; out[p++] = 0xff; out[p++] = 0xff
  return out
}

/**
 * Where a layer's external TOC comes from: its bytes (the gzip TOC member), or a function that
 * fetches them. A function that throws makes the open fail with its reason (the fallback says why).
 */
export type ExternalTocSource = Buffer | (() => Promise<Buffer>)
