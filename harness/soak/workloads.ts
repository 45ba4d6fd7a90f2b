/**
 * What each soak container runs, and how its output is checked against the source hashes.
 * Workloads print "<sha256>  <path>" lines (busybox sha256sum's format; the python one imitates
 * it), so one checker covers all of them: every printed hash must equal the source's, and every
 * file the workload is meant to read must have been printed.
 */
import type { ImageName, SoakImage } from './images.js'

export function workloadCommand(image: SoakImage): string[] {
  const bb = '/bin/busybox'
  switch (image.name) {
    case 'busybox': return [bb, 'echo', 'soak-ok']
    case 'bigfile': return [bb, 'sha256sum', ...[...image.files.keys()].sort()]
    case 'walker': return [bb, 'sh', '-c', `${bb} find / -xdev -exec ${bb} stat -c '%n %s' {} + >/dev/null && ${bb} find /tree -type f -exec ${bb} sha256sum {} +`]
    case 'python': return ['python3', '-c', [
      'import glob, hashlib, sys',
      'for p in sorted(glob.glob("/usr/lib/python3.*/*.py")):',
      '    print(hashlib.sha256(open(p, "rb").read()).hexdigest() + "  " + p)',
    ].join('\n')]
    case 'corrupt': return [bb, 'sha256sum', '/data/corrupt.bin']
  }
}

/** Why a run counts as failed; `wrong-bytes` and `corrupt-served` are never excusable. */
export type Outcome = 'ok' | 'wrong-bytes' | 'corrupt-served' | 'missing-output' | 'eio' | 'enotconn' | 'snapshotter-unavailable' | 'timeout' | 'other'

export interface Verdict {
  outcome: Outcome
  filesChecked: number
  bytesChecked: number
  detail?: string
}

const EIO = /input\/output error|errno 5\b|\bEIO\b/i

export function classifyFailure(text: string, timedOut: boolean): Outcome {
  if (timedOut) return 'timeout'
  if (EIO.test(text)) return 'eio'
  if (/transport endpoint is not connected|ENOTCONN|software caused connection abort/i.test(text)) return 'enotconn'
  if (/snapshotter|connection refused|Unavailable|no such file or directory.*s\.sock|error reading from server/i.test(text)) return 'snapshotter-unavailable'
  return 'other'
}

export function verify(image: SoakImage, code: number, stdout: string, stderr: string, timedOut: boolean): Verdict {
  const seen = new Map<string, string>()
  for (const line of stdout.split('\n')) {
    const m = /^([0-9a-f]{64}) {2}(\/\S+)$/.exec(line.trim())
    if (m) seen.set(m[2] as string, m[1] as string)
  }
  let filesChecked = 0
  let bytesChecked = 0
  for (const [path, got] of seen) {
    const want = image.files.get(path)
    if (image.name === 'corrupt') return { outcome: 'corrupt-served', filesChecked, bytesChecked, detail: `${path}: the corrupted layer returned bytes (sha256 ${got})` }
    if (want === undefined) continue
    if (got !== want) return { outcome: 'wrong-bytes', filesChecked, bytesChecked, detail: `${path}: sha256 ${got}, source ${want}` }
    filesChecked++
    bytesChecked += image.sizes.get(path) ?? 0
  }
  if (image.name === 'corrupt') {
    // Success for this image is the failure of the read, as EIO.
    const outcome = code !== 0 && EIO.test(stderr + stdout) ? 'ok' : code === 0 ? 'corrupt-served' : classifyFailure(stderr + stdout, timedOut)
    return { outcome, filesChecked: 0, bytesChecked: 0, ...(outcome === 'ok' ? {} : { detail: `${code}: ${(stderr + stdout).slice(-300)}` }) }
  }
  if (code !== 0 || timedOut) return { outcome: classifyFailure(stderr + stdout, timedOut), filesChecked, bytesChecked, detail: `exit ${code}: ${stderr.slice(-400)} | stdout ${stdout.length} bytes` }
  if (image.name === 'busybox') return /soak-ok/.test(stdout) ? { outcome: 'ok', filesChecked: 0, bytesChecked: 0 } : { outcome: 'missing-output', filesChecked, bytesChecked, detail: stdout.slice(-200) }
  if (filesChecked !== image.files.size) return { outcome: 'missing-output', filesChecked, bytesChecked, detail: `${filesChecked} of ${image.files.size} files hashed` }
  return { outcome: 'ok', filesChecked, bytesChecked }
}

export const ALL_IMAGES: ImageName[] = ['busybox', 'bigfile', 'walker', 'python', 'corrupt']
