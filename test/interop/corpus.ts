/**
 * The interop corpus (scripts/fixtures/interop-corpus.sh): layers made by GNU tar, bsdtar, Python
 * tarfile, umoci, skopeo and in Docker's whiteout style, each converted by the reference
 * converter (ctr-remote). Tests compare what our readers see with GNU `tar -x` of the source.
 * Building it needs root, containerd, ctr-remote, umoci and bsdtar, so its users are e2e tests.
 */
// stargzd-test: e2e
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { lstat, readFile, readdir, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../../harness/cli.js'

const execFileP = promisify(execFile)

export interface CorpusEntry {
  name: string
  /** The reference-converted layer blob, relative to the corpus dir. */
  blob: string
  digest: string
  size: number
  diffID: string
  tocDigest: string
  /** The TOC's root entry name as the reference wrote it ("/", "./", ".") or null. */
  rootEntry: string | null
  /** The source tar, and the producer's own compressed layer when there is one. */
  source: string
  producerLayer: string | null
  extract: string
}

export interface Corpus { dir: string; entries: CorpusEntry[] }

export async function loadCorpus(): Promise<Corpus> {
  const { stdout } = await execFileP('bash', [join(REPO, 'scripts/fixtures/interop-corpus.sh')], { maxBuffer: 1 << 20, timeout: 1_800_000 })
  const dir = stdout.trim()
  const { entries } = JSON.parse(await readFile(join(dir, 'corpus.json'), 'utf8')) as { entries: CorpusEntry[] }
  return { dir, entries }
}

export type Node =
  | { type: 'dir'; mode: number }
  | { type: 'reg'; mode: number; size: number; sha256: string }
  | { type: 'symlink'; target: string }
  | { type: 'other'; mode: number }

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/**
 * Every node under root by relative path ('' excluded). `skip(rel, base)` drops a node and what
 * is under it.
 */
export async function walkTree(root: string, skip: (rel: string, base: string) => boolean = () => false): Promise<Map<string, Node>> {
  const out = new Map<string, Node>()
  const visit = async (rel: string): Promise<void> => {
    for (const base of (await readdir(join(root, rel))).sort()) {
      const r = rel === '' ? base : `${rel}/${base}`
      if (skip(r, base)) continue
      const full = join(root, r)
      const st = await lstat(full)
      if (st.isDirectory()) {
        out.set(r, { type: 'dir', mode: st.mode & 0o7777 })
        await visit(r)
      } else if (st.isFile()) {
        let data: Buffer
        try {
          data = await readFile(full)
        } catch (e) {
          throw new Error(`reading ${r}: ${(e as Error).message}`, { cause: e })
        }
        out.set(r, { type: 'reg', mode: st.mode & 0o7777, size: st.size, sha256: sha256(data) })
      } else if (st.isSymbolicLink()) {
        out.set(r, { type: 'symlink', target: await readlink(full) })
      } else {
        out.set(r, { type: 'other', mode: st.mode })
      }
    }
  }
  await visit('')
  return out
}

/** Whiteout markers are layer metadata: a mounted image never shows them. */
export const isWhiteout = (_rel: string, base: string): boolean => base.startsWith('.wh.')
