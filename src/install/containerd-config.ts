/**
 * Merge what stargzd needs into a containerd config.toml, idempotently:
 *
 *   [proxy_plugins.stargz]  type = "snapshot", address = <socket>
 *   [proxy_plugins.stargz.exports]  root = <stargzd root>/   (containerd reports the image
 *       filesystem of a proxy snapshotter from it: kubelet's image GC and ImageFsInfo)
 *   CRI: snapshotter = "stargz", disable_snapshot_annotations = false
 *        (version 2: plugins."io.containerd.grpc.v1.cri".containerd;
 *         version 3, containerd 2.x: plugins."io.containerd.cri.v1.images")
 *
 * Nothing is written when the file already says all that (run twice → same file). Otherwise the
 * operator's text is kept as written, comments included, with the missing tables appended; only
 * when that cannot express the change (a key of ours already set to something else, e.g.
 * snapshotter = "overlayfs") is the file re-serialised from its parsed form. Either way the
 * caller keeps a backup of the old file (src/install/merge-containerd-config.ts).
 */
import { isDeepStrictEqual } from 'node:util'
import { parse, stringify } from 'smol-toml'
import { InvalidArgumentError } from '../errors.js'

export interface StargzContainerdSettings {
  /** stargzd's snapshotter socket. */
  address: string
  /** stargzd's root dir (exports.root). */
  root: string
  /** Also make stargz CRI's snapshotter (default true). */
  cri?: boolean
}

export interface MergeResult {
  text: string
  changed: boolean
  /** How the change was made: the operator's text kept and tables appended, or re-serialised. */
  mode: 'unchanged' | 'appended' | 'rewritten'
}

type Table = Record<string, unknown>
/** A table path and the keys to set in it. */
type Want = [path: string[], keys: Table]

const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)

function wants(version: number, s: StargzContainerdSettings): Want[] {
  const root = s.root.endsWith('/') ? s.root : `${s.root}/`
  const out: Want[] = [
    [['proxy_plugins', 'stargz'], { type: 'snapshot', address: s.address }],
    [['proxy_plugins', 'stargz', 'exports'], { root }],
  ]
  if (s.cri ?? true) {
    const cri = version >= 3 ? ['plugins', 'io.containerd.cri.v1.images'] : ['plugins', 'io.containerd.grpc.v1.cri', 'containerd']
    out.push([cri, { snapshotter: 'stargz', disable_snapshot_annotations: false }])
  }
  return out
}

function tableAt(doc: Table, path: string[], create: boolean): Table | undefined {
  let t: Table = doc
  for (const k of path) {
    const next = t[k]
    if (next === undefined) {
      if (!create) return undefined
      t[k] = {}
    } else if (!isTable(next)) {
      throw new InvalidArgumentError(`containerd config: ${path.join('.')} cannot be set: ${k} is not a table`)
    }
    t = t[k] as Table
  }
  return t
}

function apply(doc: Table, ws: Want[]): void {
  for (const [path, keys] of ws) Object.assign(tableAt(doc, path, true) as Table, keys)
}

const headerKey = (k: string): string => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k))

function block(doc: Table, ws: Want[]): string {
  const lines = ['', '# Added by stargzd\'s installer (lazy pulling of eStargz images).']
  for (const [path, keys] of ws) {
    const have = tableAt(doc, path, false) ?? {}
    const missing = Object.entries(keys).filter(([k, v]) => !isDeepStrictEqual(have[k], v))
    if (missing.length === 0) continue
    lines.push(`[${path.map(headerKey).join('.')}]`)
    for (const [k, v] of missing) lines.push(`  ${headerKey(k)} = ${JSON.stringify(v)}`)
  }
  return lines.join('\n') + '\n'
}

/** Parsed, as plain objects: smol-toml's tables need not have Object.prototype, and the deep
 * comparisons below must look at content only. */
const plain = (text: string): Table => structuredClone(parse(text)) as Table

function parseDoc(text: string, what: string): Table {
  try {
    return plain(text)
  } catch (e) {
    throw new InvalidArgumentError(`${what} is not valid TOML: ${(e as Error).message}`, { cause: e })
  }
}

/** `text`: the current file, or undefined when there is none. */
export function mergeContainerdConfig(text: string | undefined, s: StargzContainerdSettings, what = 'containerd config'): MergeResult {
  const original = text ?? ''
  const doc = parseDoc(original, what)
  let version = doc.version
  const empty = Object.keys(doc).length === 0
  if (version === undefined && !empty) {
    throw new InvalidArgumentError(`${what} has no "version" key, so containerd reads it as version 1; migrate it to version 2 first (stargzd's settings use the version 2 layout)`)
  }
  if (version === undefined) version = 2
  if (typeof version !== 'number' || (version !== 2 && version !== 3)) {
    throw new InvalidArgumentError(`${what}: version ${JSON.stringify(version)} is not supported (2 or 3)`)
  }
  const ws = wants(version, s)
  const merged = structuredClone(doc)
  if (empty) merged.version = version
  apply(merged, ws)
  if (isDeepStrictEqual(merged, doc)) return { text: original, changed: false, mode: 'unchanged' }

  const head = empty ? `${original}${original === '' || original.endsWith('\n') ? '' : '\n'}version = ${version}\n` : original
  const appended = `${head}${head === '' || head.endsWith('\n') ? '' : '\n'}${block(doc, ws)}`
  try {
    if (isDeepStrictEqual(plain(appended), merged)) return { text: appended, changed: true, mode: 'appended' }
  } catch {
    // a key of ours is already set differently, or a table is already defined: re-serialise
  }
  const rewritten = `# Rewritten by stargzd's installer to set the stargz snapshotter; the previous file is kept\n# beside this one as a backup (comments and layout were in it).\n${stringify(merged)}\n`
  return { text: rewritten, changed: true, mode: 'rewritten' }
}
