import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { RegistryClient } from '../../src/registry/client.js'
import { listMounts } from '../../src/fuse/unmount.js'
import { REPO } from '../../harness/cli.js'
import { startRegistry } from '../../harness/registry.js'
import { blobFromTree, scratch } from '../../harness/fuse-fixtures.js'
import type { NodeSpec } from '../../harness/tree.js'

const M = 1_700_000_000
const base: NodeSpec[] = [
  { type: 'file', path: 'etc/os-release', content: 'ID=test\n', mtime: M },
  { type: 'file', path: 'etc/gone', content: 'x', mtime: M },
  { type: 'file', path: 'bin/hello', content: '#!/bin/sh\necho hi\n', mode: 0o755, mtime: M },
]
const top: NodeSpec[] = [
  { type: 'file', path: 'etc/.wh.gone', content: '', mtime: M },
  { type: 'file', path: 'app/main.txt', content: 'top layer\n', mtime: M },
]

function sha(b: Buffer): string { return 'sha256:' + createHash('sha256').update(b).digest('hex') }

async function mountsUnder(dir: string): Promise<string[]> {
  return (await listMounts()).map((m) => m.mountpoint).filter((m) => m === dir || m.startsWith(dir + '/'))
}

interface Running { child: ChildProcess; stderr: () => string; exited: Promise<number | null> }

/** Runs `stargz mount` from source, through the same dispatcher as src/cli/main.ts. */
const RUN_MOUNT = `
import * as mount from './src/cli/commands/mount.ts'
import { runCommand } from './src/cli/dispatch.ts'
import { errorMessage, isStargzError } from './src/errors.ts'
runCommand(mount, process.argv.slice(1)).then((code) => { process.exitCode = code }, (e) => {
  process.stderr.write((isStargzError(e) ? 'stargz: ' + e.code + ': ' : 'stargz: ') + errorMessage(e) + '\\n')
  process.exitCode = 1
})`

function startMount(args: string[]): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', RUN_MOUNT, ...args], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (b: Buffer) => { err += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, stderr: () => err, exited }
}

async function waitFor(r: Running, msg: string): Promise<boolean> {
  for (;;) {
    if (r.stderr().split('\n').some((l) => l.includes(`"msg":"${msg}"`))) return true
    if (r.child.exitCode !== null) return false
    await new Promise((res) => setTimeout(res, 50))
  }
}

t.test('stargz mount: lazy layers + overlay, refusals, full fetch, clean shutdown', async (t) => {
  const dir = await scratch(t, 'stargz-mount-')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const l1 = await blobFromTree(join(dir, 'b1'), base)
  const l2 = await blobFromTree(join(dir, 'b2'), top)
  const layers = await Promise.all([l1, l2].map(async (l) => {
    const data = await readFile(l.blob)
    const tar = await readFile(l.tar)
    return { data, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha(tar) }
  }))
  const config = (diffIds: string[]): Buffer => Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }))
  await client.pushImage(`${reg.host}/test/esgz:1`, config(layers.map((l) => l.diffId)), layers)
  // The same top layer over a plain gzip base: not eStargz.
  const plainTar = await readFile(l1.tar)
  const plain = { data: gzipSync(plainTar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha(plainTar) }
  await client.pushImage(`${reg.host}/test/mixed:1`, config([plain.diffId, layers[1]!.diffId]), [plain, layers[1]!])

  const run = async (name: string, ref: string, extra: string[], check: (mnt: string) => Promise<void>): Promise<void> => {
    const mnt = join(dir, `${name}-mnt`)
    const state = join(dir, `${name}-state`)
    await mkdir(mnt)
    const r = startMount([ref, mnt, '--plain-http', '--state-dir', state, ...extra])
    t.teardown(() => { if (r.child.exitCode === null) r.child.kill('SIGKILL') })
    const up = await waitFor(r, 'mounted')
    t.ok(up, `${name}: mounted`, up ? {} : { stderr: r.stderr() })
    await check(mnt)
    r.child.kill('SIGTERM')
    t.equal(await r.exited, 0, `${name}: exits 0 on SIGTERM`)
    t.same(await mountsUnder(dir), [], `${name}: nothing left mounted`)
  }

  await run('lazy', `${reg.host}/test/esgz:1`, [], async (mnt) => {
    t.same((await readdir(mnt)).sort(), ['app', 'bin', 'etc'])
    t.same((await readdir(join(mnt, 'etc'))).sort(), ['os-release'], 'whiteout applied')
    t.equal(await readFile(join(mnt, 'app/main.txt'), 'utf8'), 'top layer\n')
    t.equal(await readFile(join(mnt, 'bin/hello'), 'utf8'), '#!/bin/sh\necho hi\n')
    await t.rejects(writeFile(join(mnt, 'new'), 'x'), { code: 'EROFS' })
  })

  await run('rw', `${reg.host}/test/esgz:1`, ['--rw'], async (mnt) => {
    await writeFile(join(mnt, 'etc/new'), 'written\n')
    t.equal(await readFile(join(mnt, 'etc/new'), 'utf8'), 'written\n')
    t.equal(await readFile(join(dir, 'rw-state/upper/etc/new'), 'utf8'), 'written\n', 'write landed in the upper dir')
  })

  // Not eStargz, no --allow-full-fetch: refused, nothing mounted.
  const mnt = join(dir, 'refused-mnt')
  await mkdir(mnt)
  const refused = startMount([`${reg.host}/test/mixed:1`, mnt, '--plain-http', '--state-dir', join(dir, 'refused-state')])
  t.not(await refused.exited, 0, 'refused with a non-zero exit')
  t.match(refused.stderr(), /is not eStargz.*--allow-full-fetch/)
  t.same(await mountsUnder(dir), [], 'nothing left mounted after the refusal')

  await run('full', `${reg.host}/test/mixed:1`, ['--allow-full-fetch'], async (mnt) => {
    t.equal(await readFile(join(mnt, 'etc/os-release'), 'utf8'), 'ID=test\n', 'file of the fully fetched layer')
    t.same((await readdir(join(mnt, 'etc'))).sort(), ['os-release'], 'whiteout from the lazy layer hides the full layer file')
    t.equal(await readFile(join(mnt, 'app/main.txt'), 'utf8'), 'top layer\n')
  })
})
