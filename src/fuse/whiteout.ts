/**
 * How OCI / AUFS whiteouts in a layer's TOC become what overlayfs expects from a lower layer:
 *
 *   dir/.wh.NAME        → dir/NAME, a character device 0/0 owned by 0:0 (overlay's whiteout)
 *   dir/.wh..wh..opq    → xattr trusted.overlay.opaque = "y" on dir; the marker itself hidden
 *   dir/.wh..wh.*       → other AUFS metadata (e.g. .wh..wh.plnk): hidden
 *
 * The eStargz bookkeeping files at the root (the TOC tar entry and the prefetch landmarks) are
 * hidden from listings and lookups, as the reference does.
 */
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME } from '../estargz/types.js'

export const WHITEOUT_PREFIX = '.wh.'
export const WHITEOUT_META_PREFIX = '.wh..wh.'
export const OPAQUE_MARKER = '.wh..wh..opq'
export const OPAQUE_XATTR = 'trusted.overlay.opaque'
/** For overlayfs mounted with `userxattr` (rootless); served alongside the trusted one. */
export const OPAQUE_USER_XATTR = 'user.overlay.opaque'
export const OPAQUE_VALUE = Buffer.from('y')

const HIDDEN_AT_ROOT: ReadonlySet<string> = new Set([TOC_TAR_NAME, PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK])

export type NameClass =
  | { kind: 'plain' }
  | { kind: 'hidden' }
  | { kind: 'opaque' }
  | { kind: 'whiteout'; target: string }

/** Classify the base name of a TOC entry living in directory `dir` ('' for the root). */
export function classifyName(dir: string, base: string): NameClass {
  if (dir === '' && HIDDEN_AT_ROOT.has(base)) return { kind: 'hidden' }
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'plain' }
  if (base === OPAQUE_MARKER) return { kind: 'opaque' }
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'hidden' }
  const target = base.slice(WHITEOUT_PREFIX.length)
  if (target === '' || target === '.' || target === '..') return { kind: 'hidden' }
  return { kind: 'whiteout', target }
}
