/**
 * The kernel's mount table as seen by this process (/proc/self/mountinfo), one parser for the whole
 * project: FUSE layer mounts, snapshot dirs, image mounts and the benchmark all ask it.
 *
 * mountinfo line: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
 * Paths escape space, tab, newline and backslash as 3-digit octal (\040 ...).
 */
import { readFile } from 'node:fs/promises'

export interface MountInfo { mountpoint: string; fsType: string; source: string; majorMinor: string; options: string }

export function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export async function listMounts(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8')
  const out: MountInfo[] = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    const [left, right] = line.split(' - ')
    const f = (left ?? '').split(' ')
    const r = (right ?? '').split(' ')
    out.push({ mountpoint: unescapeMountPath(f[4] ?? ''), majorMinor: f[2] ?? '', options: f[5] ?? '', fsType: r[0] ?? '', source: unescapeMountPath(r[1] ?? '') })
  }
  return out
}

/** Mount points at or below `dir`, deepest first (so they can be unmounted in that order). */
export async function mountsUnder(dir: string): Promise<string[]> {
  return (await listMounts())
    .map((m) => m.mountpoint)
    .filter((mp) => mp === dir || mp.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length)
}
