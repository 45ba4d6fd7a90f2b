import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { header, writeTar, type TarEntry } from '../../src/bench/image/tar-pack.js'
import { binaryFile, textFile } from '../../src/bench/image/seeded-data.js'

const execFileP = promisify(execFile)

function entries(): TarEntry[] {
  const long = `deep/${'d'.repeat(80)}/${'f'.repeat(90)}.bin`
  return [
    { type: 'dir', name: 'deep' },
    { type: 'dir', name: `deep/${'d'.repeat(80)}` },
    { type: 'file', name: long, size: 100_000, data: () => binaryFile('long', 100_000, { weights: 0.5, sparse: 0.3, noise: 0.2 }, 4096) },
    { type: 'file', name: 'text.py', size: 5000, data: () => [textFile('t', 5000)], mode: 0o755 },
    { type: 'file', name: 'empty', size: 0, data: () => [] },
  ]
}

t.test('GNU tar reads what writeTar wrote, byte for byte', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-tar-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const tar = join(dir, 'a.tar')
  const size = await writeTar(tar, entries())
  t.equal(size % 512, 0)
  const { stdout } = await execFileP('tar', ['-tvf', tar])
  t.match(stdout, /-rwxr-xr-x root\/root\s+5000 2023-01-01 00:00 text\.py/)
  t.match(stdout, new RegExp(`${'f'.repeat(90)}\\.bin`))
  await execFileP('tar', ['-xf', tar, '-C', dir])
  const long = entries()[2] as Extract<TarEntry, { type: 'file' }>
  t.same(await readFile(join(dir, long.name)), Buffer.concat([...long.data()]))
  t.equal((await readFile(join(dir, 'text.py'))).length, 5000)
})

t.test('the same entries give the same archive', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-tar-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeTar(join(dir, 'a.tar'), entries())
  await writeTar(join(dir, 'b.tar'), entries())
  const h = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex')
  t.equal(await h(join(dir, 'a.tar')), await h(join(dir, 'b.tar')))
})

t.test('refuses data that does not match the declared size', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-tar-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await t.rejects(writeTar(join(dir, 'x.tar'), [{ type: 'file', name: 'x', size: 3, data: () => [Buffer.from('ab')] }]), /2 bytes, size says 3/)
  await t.rejects(writeTar(join(dir, 'y.tar'), [{ type: 'file', name: 'y', size: 1, data: () => [Buffer.from('ab')] }]), /longer than its size/)
})

t.test('header rejects names ustar cannot hold', async (t) => {
  t.throws(() => header({ type: 'dir', name: 'x'.repeat(300) }), /too long/)
  t.throws(() => header({ type: 'dir', name: 'caf\u00e9' }), /printable ASCII/)
})
