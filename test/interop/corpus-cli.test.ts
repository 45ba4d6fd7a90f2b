/**
 * #10 §1 interop, CLI reader paths: `stargz toc`, `stargz verify` and `stargz cat` over every
 * layer of the interop corpus, both as the reference converter (ctr-remote) wrote it and as our
 * `stargz convert-layer` converts the producer's own layer. Every file is compared byte for byte
 * with GNU `tar -x` of the source. `toc`, `verify` and one `cat` per blob run as child processes
 * (the installed command's path); `cat` of every other file calls the same command's run() in this
 * process with stdout captured, which skips ~250 process start-ups and nothing of the command. Before the fix, every blob here with a "/" root entry (umoci's
 * ".", `tar -P`'s "/") failed with "name is absolute (rule: name-absolute)".
 */
import t, { type Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runStargz } from '../../harness/cli.js'
import * as catCommand from '../../src/cli/commands/cat.js'
import { runCommand } from '../../src/cli/dispatch.js'
import { loadCorpus, sha256, walkTree, type Node } from './corpus.js'

t.setTimeout(1_800_000)

interface TocJson { entries: Array<{ name: string; type: string; linkName?: string; size?: number; xattrs?: Record<string, string> }> }

const corpus = await loadCorpus()
const work = await mkdtemp(join(tmpdir(), 'stargz-interop-cli-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

t.test('the corpus exercises every root-entry style', async (t) => {
  const roots = new Map(corpus.entries.map((e) => [e.name, e.rootEntry]))
  t.equal(roots.get('python-abs'), '/', 'tar -P style: "/" root entry')
  t.equal(roots.get('busybox-abs'), '/')
  t.equal(roots.get('skopeo'), '/')
  t.equal(roots.get('gnu'), './', 'GNU tar -C dir .: "./"')
  t.equal(roots.get('bsdtar'), './')
  t.equal(roots.get('umoci'), '.', 'umoci: "."')
  t.equal(roots.get('python'), null, 'Docker style: no root entry')
})

async function checkBlob(t: Test, label: string, blob: string, tocDigest: string, want: Map<string, Node>, xattrs: boolean): Promise<void> {
  const toc = await runStargz(['toc', blob, '--toc-digest', tocDigest])
  t.equal(toc.code, 0, `${label}: stargz toc: ${toc.stderr}`)
  if (toc.code !== 0) return
  const byName = new Map((JSON.parse(toc.stdout.toString()) as TocJson).entries.filter((e) => e.type !== 'chunk').map((e) => [e.name, e]))
  for (const [name, node] of want) {
    const e = byName.get(name)
    if (!e) { t.fail(`${label}: ${name} is in the TOC`); continue }
    if (node.type === 'reg') t.ok(e.type === 'reg' || e.type === 'hardlink', `${label}: ${name} is a file`)
    else if (node.type === 'symlink') t.same([e.type, e.linkName], ['symlink', node.target], `${label}: ${name} symlink`)
    else t.equal(e.type, node.type, `${label}: ${name} type`)
    if (e.type === 'hardlink') t.ok(byName.has(e.linkName ?? ''), `${label}: ${name} hardlink target ${e.linkName} cleaned and present`)
  }
  if (xattrs) {
    t.equal(byName.get('data/xattr.txt')?.xattrs?.['user.interop'], Buffer.from('value-1').toString('base64'), `${label}: xattr carried`)
  }

  const v = await runStargz(['verify', blob, '--toc-digest', tocDigest])
  t.equal(v.code, 0, `${label}: stargz verify: ${v.stderr}`)
  if (v.code === 0) t.equal((JSON.parse(v.stdout.toString()) as { unverifiedChunks: number }).unverifiedChunks, 0, `${label}: every chunk verified`)

  let files = 0
  let spawned = false
  for (const [name, node] of want) {
    if (node.type !== 'reg') continue
    // The biggest file through a real process; the rest in-process.
    const viaProcess = !spawned && node.size > 65536
    if (viaProcess) spawned = true
    const c = viaProcess ? await runStargz(['cat', blob, '/' + name]) : await catInProcess([blob, '/' + name])
    if (c.code !== 0 || sha256(c.stdout) !== node.sha256 || c.stdout.length !== node.size) {
      t.fail(`${label}: stargz cat /${name} byte-exact`, { code: c.code, stderr: c.stderr, got: c.stdout.length, want: node.size })
    } else files++
  }
  t.ok(files > 0, `${label}: ${files} files read byte-exact with stargz cat`)
  t.ok(spawned || label.startsWith('docker'), `${label}: one cat ran as a child process`)
}

/** `stargz cat ARGS` run in this process: stdout captured, errors as a non-zero code. */
async function catInProcess(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const parts: Buffer[] = []
  const write = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: Uint8Array | string) => { parts.push(Buffer.from(chunk)); return true }) as typeof process.stdout.write
  try {
    const code = await runCommand(catCommand, args)
    return { code, stdout: Buffer.concat(parts), stderr: '' }
  } catch (e) {
    return { code: 1, stdout: Buffer.concat(parts), stderr: String(e) }
  } finally {
    process.stdout.write = write
  }
}

for (const e of corpus.entries) {
  t.test(`${e.name}: toc, verify, cat read every file of the ctr-remote and the stargz conversion`, async (t) => {
    const want = await walkTree(join(corpus.dir, e.extract))
    const xattrs = e.name === 'gnu-pax' || e.name === 'bsdtar'
    await checkBlob(t, `${e.name} (ctr-remote)`, join(corpus.dir, e.blob), e.tocDigest, want, xattrs)

    const ours = join(work, `${e.name}.estargz`)
    const input = join(corpus.dir, e.producerLayer ?? e.source)
    const conv = await runStargz(['convert-layer', input, ours, '--chunk-size', '65536'])
    t.equal(conv.code, 0, `stargz convert-layer ${e.producerLayer ?? e.source}: ${conv.stderr}`)
    if (conv.code !== 0) return
    const { tocDigest } = JSON.parse(conv.stdout.toString()) as { tocDigest: string }
    await checkBlob(t, `${e.name} (stargz convert-layer)`, ours, tocDigest, want, xattrs)
  })
}
