#!/usr/bin/env node
/**
 * merge-containerd-config --config FILE [--address SOCK] [--root DIR] [--no-cri]
 *
 * Used by scripts/install-system.sh and the DaemonSet's init container: merges stargzd's settings
 * into containerd's config (src/install/containerd-config.ts). Prints "unchanged" or "changed"
 * on stdout, so the caller restarts containerd only when it must. A changed file is written via a
 * temp file + rename with the old file's mode, after copying the old one to FILE.bak.<UTC stamp>.
 * Exit 0 on success, 2 on usage errors, 1 when the config cannot be merged.
 */
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import { DEFAULTS } from '../config/schema.js'
import { errorMessage } from '../errors.js'
import { mergeContainerdConfig } from './containerd-config.js'

const USAGE = 'usage: merge-containerd-config --config FILE [--address SOCK] [--root DIR] [--no-cri]'

async function main(argv: string[]): Promise<number> {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        address: { type: 'string', default: DEFAULTS.address },
        root: { type: 'string', default: DEFAULTS.root },
        'no-cri': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }))
  } catch (e) {
    process.stderr.write(`${errorMessage(e)}\n${USAGE}\n`)
    return 2
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const file = values.config
  if (!file) {
    process.stderr.write(`--config is required\n${USAGE}\n`)
    return 2
  }
  let text: string | undefined
  let mode = 0o644
  try {
    text = await readFile(file, 'utf8')
    mode = (await stat(file)).mode & 0o7777
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const r = mergeContainerdConfig(text, { address: values.address, root: values.root, cri: !values['no-cri'] }, file)
  if (!r.changed) {
    process.stdout.write('unchanged\n')
    return 0
  }
  await mkdir(dirname(file), { recursive: true })
  if (text !== undefined) {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
    const backup = `${file}.bak.${stamp}`
    await copyFile(file, backup)
    process.stderr.write(`previous ${file} kept as ${backup}\n`)
  }
  const tmp = `${file}.stargzd-tmp-${process.pid}`
  try {
    await writeFile(tmp, r.text, { mode })
    await rename(tmp, file)
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  }
  process.stderr.write(`${file}: stargz settings ${r.mode === 'appended' ? 'appended' : 'merged (file re-serialised)'}\n`)
  process.stdout.write('changed\n')
  return 0
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`merge-containerd-config: ${errorMessage(e)}\n`)
    process.exit(1)
  },
)
