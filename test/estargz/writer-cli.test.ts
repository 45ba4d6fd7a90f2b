/** `stargz convert-layer`: output JSON, options, and clean failures that leave no OUT behind. */
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { memTar } from '../../harness/memtar.js'
import { tocOf } from '../../harness/convert.js'
import { tempDir } from '../../harness/tree.js'

const ROOT = join(import.meta.dirname, '..', '..')

function stargz(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

const layer = memTar([
  { name: 'etc/', type: '5', mode: 0o755 },
  { name: 'etc/os-release', content: 'ID=test\n', mode: 0o644 },
  { name: 'usr/bin/tool', content: Buffer.alloc(300_000, 7), mode: 0o755 },
])

t.test('converts and prints the four digests as JSON', async (tt) => {
  const dir = await tempDir(tt)
  await writeFile(join(dir, 'in.tar.gz'), gzipSync(layer))
  await writeFile(join(dir, 'prio.txt'), '/usr/bin/tool\n\netc/os-release\n')
  const r = await stargz(['convert-layer', join(dir, 'in.tar.gz'), join(dir, 'out.esgz'), '--chunk-size', '100000', '--prioritized', join(dir, 'prio.txt')])
  tt.equal(r.code, 0, r.stderr)
  tt.equal(r.stderr, '')
  const lines = r.stdout.trim().split('\n')
  tt.equal(lines.length, 1, 'one line of output')
  const out = JSON.parse(lines[0]!) as Record<string, unknown>
  tt.same(Object.keys(out), ['digest', 'diffID', 'tocDigest', 'size'])
  const blob = await readFile(join(dir, 'out.esgz'))
  tt.equal(out.digest, 'sha256:' + createHash('sha256').update(blob).digest('hex'))
  tt.equal(out.size, blob.length)
  const { toc, json } = tocOf(blob)
  tt.equal(out.tocDigest, 'sha256:' + createHash('sha256').update(json).digest('hex'))
  tt.same(toc.entries.filter((e) => e.type !== 'chunk').map((e) => e.name), ['usr/bin/tool', 'etc/', 'etc/os-release', '.prefetch.landmark'], '--prioritized order')
  tt.equal(toc.entries.filter((e) => e.name === 'usr/bin/tool').length, 3, '--chunk-size splits the file')
  tt.same(await readdir(dir), ['in.tar.gz', 'out.esgz', 'prio.txt'], 'no temp files left')
})

t.test('--legacy writes the 47-byte footer', async (tt) => {
  const dir = await tempDir(tt)
  await writeFile(join(dir, 'in.tar'), layer)
  const r = await stargz(['convert-layer', join(dir, 'in.tar'), join(dir, 'out'), '--legacy'])
  tt.equal(r.code, 0, r.stderr)
  const blob = await readFile(join(dir, 'out'))
  tt.equal(blob.toString('latin1', blob.length - 47 + 28, blob.length - 47 + 34), 'STARGZ')
  tt.equal(blob.readUInt16LE(blob.length - 47 + 10), 22, 'XLEN 22')
})

t.test('bad inputs: exit 1 (usage: 2), one error line (usage: plus the --help hint), no OUT', async (tt) => {
  const dir = await tempDir(tt)
  await writeFile(join(dir, 'text.tar'), 'hello, this is not a tar archive\n'.repeat(40))
  await writeFile(join(dir, 'trunc.tar'), layer.subarray(0, 2000))
  await writeFile(join(dir, 'trunc.tar.gz'), gzipSync(layer).subarray(0, 200))
  const cases: [string, string[], RegExp][] = [
    ['not a tar', [join(dir, 'text.tar')], /ERR_TAR_INVALID: tar header at offset 0: bad checksum/],
    ['truncated tar', [join(dir, 'trunc.tar')], /ERR_TAR_INVALID: truncated tar/],
    ['truncated gzip', [join(dir, 'trunc.tar.gz')], /ERR_TAR_INVALID: input layer is not a valid gzip stream/],
    ['nonexistent', [join(dir, 'nope.tar')], /ERR_NOT_FOUND: input layer .*nope\.tar does not exist/],
    ['bad flag', [join(dir, 'text.tar'), '--chunk-size', 'big'], /--chunk-size/],
  ]
  // A usage error (flags, arguments) exits 2 and points at --help, as ctr and nerdctl do.
  const usage = new Set(['bad flag'])
  for (const [what, args, re] of cases) {
    const out = join(dir, `out-${what.replace(/ /g, '-')}`)
    const r = await stargz(['convert-layer', ...args.slice(0, 1), out, ...args.slice(1)])
    tt.equal(r.code, usage.has(what) ? 2 : 1, `${what}: exit ${usage.has(what) ? 2 : 1}`)
    tt.equal(r.stdout, '', `${what}: nothing on stdout`)
    const lines = r.stderr.trim().split('\n')
    tt.equal(lines.length, usage.has(what) ? 2 : 1, `${what}: one error line${usage.has(what) ? ' and the --help hint' : ''}`)
    if (usage.has(what)) tt.match(lines[1], /--help/, `${what}: points at --help`)
    tt.match(lines[0], re, what)
    tt.notOk(existsSync(out), `${what}: OUT not created`)
  }
  tt.same((await readdir(dir)).sort(), ['text.tar', 'trunc.tar', 'trunc.tar.gz'], 'no temp files left')
})
