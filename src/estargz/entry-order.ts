/**
 * Entry order of an eStargz layer, as the reference builds it (estargz/build.go sortEntries):
 *
 *   prioritized files, in the given order, each preceded by its not-yet-emitted parent
 *   directories (and, for a hardlink, its target), then the landmark file
 *   (.prefetch.landmark, or .no.prefetch.landmark when nothing is prioritized), then every
 *   other entry in input order.
 *
 * Names are matched after cleaning (cleanEntryName). One deliberate difference: the reference
 * gives up on a prioritized file whose parent directory has no entry in the layer (it reports the
 * file as missing); we skip the missing parent and still prioritize the file.
 */
import { posix } from 'node:path'

/** Go's strings.TrimPrefix(path.Clean("/"+name), "/"). */
export function cleanEntryName(name: string): string {
  let p = posix.normalize('/' + name)
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1)
  return p.slice(1)
}

function parentOf(clean: string): string {
  const i = clean.lastIndexOf('/')
  return i < 0 ? '' : clean.slice(0, i)
}

export interface OrderableEntry {
  readonly cleanName: string
  readonly isHardlink: boolean
  readonly linkname: string
}

export interface OrderResult<E> {
  /** Prioritized entries (with their parents), to go before the landmark. */
  prioritized: E[]
  /** The rest, in input order. */
  rest: E[]
  /** Prioritized paths that matched no entry. */
  missing: string[]
}

/** `entries` must be in input order with duplicates already removed. */
export function orderEntries<E extends OrderableEntry>(entries: readonly E[], prioritizedFiles: readonly string[]): OrderResult<E> {
  const index = new Map<string, E>()
  for (const e of entries) index.set(e.cleanName, e)
  const picked = new Set<string>()
  const prioritized: E[] = []
  const missing: string[] = []

  const pick = (e: E): void => {
    if (picked.has(e.cleanName)) return
    picked.add(e.cleanName)
    prioritized.push(e)
  }
  const moveRec = (raw: string, depth: number): boolean => {
    const name = cleanEntryName(raw)
    const e = index.get(name)
    if (name === '') {
      if (e) pick(e)
      return true
    }
    if (!e) return picked.has(name)
    if (depth > 4096) return true // Hardlink cycles cannot occur in a valid tar; stop anyway.
    moveRec(parentOf(name), depth + 1)
    if (e.isHardlink) moveRec(e.linkname, depth + 1)
    pick(e)
    return true
  }
  for (const f of prioritizedFiles) {
    if (!moveRec(f, 0)) missing.push(f)
  }
  const rest = picked.size === 0 ? [...entries] : entries.filter((e) => !picked.has(e.cleanName))
  return { prioritized, rest, missing }
}
