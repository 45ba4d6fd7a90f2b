/**
 * What each soak container runs, and how its output is checked against the source hashes.
 * Workloads print "<sha256>  <path>" lines (busybox sha256sum's format; the python one imitates
 * it), so one checker covers all of them: every printed hash must equal the source's, and every
 * file the workload is meant to read must have been printed.
 */
import type { ImageName, SoakImage } from './images.js'

/**
 * The workload's command. Its stdout/stderr go to files in `out` (a host directory bind-mounted
 * there), not only through ctr's stdio fifos: last round one run exited 0 with no output at all,
 * and this tells "ctr lost the output" from "the workload printed nothing" (issue #17).
 */
export function workloadCommand(image: SoakImage, out = '/soak-out'): string[] {
  const bb = '/bin/busybox'
  const sh = (script: string): string[] => [bb, 'sh', '-c', `{ ${script} ; } >${out}/stdout 2>${out}/stderr; rc=$?; ${bb} cat ${out}/stdout; ${bb} cat ${out}/stderr >&2; exit $rc`]
  switch (image.name) {
    case 'busybox': return sh(`${bb} echo soak-ok`)
    case 'bigfile': return sh(`${bb} sha256sum ${[...image.files.keys()].sort().join(' ')}`)
    case 'walker': return sh(`${bb} find / -xdev -exec ${bb} stat -c '%n %s' {} + >/dev/null && ${bb} find /tree -type f -exec ${bb} sha256sum {} +`)
    case 'python': return ['python3', '-c', [
      'import glob, hashlib, sys, traceback',
      `out = open("${out}/stdout", "w"); err = open("${out}/stderr", "w")`,
      'rc = 0',
      'try:',
      '    for p in sorted(glob.glob("/usr/lib/python3.*/*.py")):',
      '        out.write(hashlib.sha256(open(p, "rb").read()).hexdigest() + "  " + p + "\\n")',
      'except BaseException:',
      '    traceback.print_exc(file=err); rc = 1',
      'out.close(); err.close()',
      `sys.stdout.write(open("${out}/stdout").read()); sys.stderr.write(open("${out}/stderr").read())`,
      'sys.exit(rc)',
    ].join('\n')]
    case 'corrupt': return sh(`${bb} sha256sum /data/corrupt.bin`)
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

/**
 * What the workload wrote into its bind-mounted output files (undefined: no file), and whether
 * ctr's own stdout lost what the file holds (counted, never a failure: the file is the record).
 */
export interface OutputFiles { stdout?: string; stderr?: string }

export function stdioLost(ctrStdout: string, files: OutputFiles): boolean {
  return files.stdout !== undefined && files.stdout.length > 0 && ctrStdout.length < files.stdout.length
}

export function verify(image: SoakImage, code: number, ctrStdout: string, ctrStderr: string, timedOut: boolean, files: OutputFiles = {}): Verdict {
  // The files are what the workload wrote; ctr's streams may have lost some of it.
  const stdout = files.stdout !== undefined && files.stdout.length >= ctrStdout.length ? files.stdout : ctrStdout
  const stderr = `${ctrStderr}${files.stderr !== undefined && !ctrStderr.includes(files.stderr) ? files.stderr : ''}`
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
  const why = `ctr stdout ${ctrStdout.length} bytes, stderr ${JSON.stringify(ctrStderr.slice(-200))}; output file ${files.stdout === undefined ? 'absent' : `${files.stdout.length} bytes`}`
  if (image.name === 'busybox') return /soak-ok/.test(stdout) ? { outcome: 'ok', filesChecked: 0, bytesChecked: 0 } : { outcome: 'missing-output', filesChecked, bytesChecked, detail: why }
  if (filesChecked !== image.files.size) return { outcome: 'missing-output', filesChecked, bytesChecked, detail: `${filesChecked} of ${image.files.size} files hashed; ${why}` }
  return { outcome: 'ok', filesChecked, bytesChecked }
}

export const ALL_IMAGES: ImageName[] = ['busybox', 'bigfile', 'walker', 'python', 'corrupt']
