/**
 * The decode worker is a compiled module (src/reader/decode-worker.ts), not a string outside the
 * type-check. The daemon runs from dist/: compile the decoder with tsc and run it with plain node
 * (no tsx) to show the worker entry resolves and decodes there too. Under tsx (this test) the
 * other tests in test/reader exercise the source path.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../../harness/cli.js'

const run = promisify(execFile)

t.test('compiled decoder pool: the worker starts from dist-style .js and verifies chunks', async (t) => {
  // Inside the repo (under the git-ignored .tap/), so the compiled modules find node_modules
  // (zstd-napi's binding) the way dist/ does.
  await mkdir(join(REPO, '.tap'), { recursive: true })
  const out = await mkdtemp(join(REPO, '.tap', 'dist-'))
  t.teardown(() => rm(out, { recursive: true, force: true }))
  await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'),
    '--outDir', out, '--rootDir', REPO, '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022',
    '--strict', '--skipLibCheck', '--types', 'node',
    join(REPO, 'src/reader/worker-decoder.ts'), join(REPO, 'src/reader/decode-worker.ts')], { cwd: REPO })
  await writeFile(join(out, 'package.json'), '{"type":"module"}\n')
  const script = join(out, 'check.mjs')
  await writeFile(script, `
import { gzipSync } from 'node:zlib'
import { createHash } from 'node:crypto'
import { WorkerChunkDecoder } from './src/reader/worker-decoder.js'
const d = new WorkerChunkDecoder({ syncBelowBytes: 0 })
const data = Buffer.alloc(300000, 7)
const digest = 'sha256:' + createHash('sha256').update(data).digest('hex')
const ref = { name: 'x', chunkOffset: 0, chunkSize: data.length, compressedOffset: 0, compressedEnd: 0, digest }
const got = await d.decode(gzipSync(data), ref)
let refused = 'no'
try { await d.decode(gzipSync(Buffer.alloc(300000, 8)), ref) } catch (e) { refused = e.code }
console.log(JSON.stringify({ ok: got.equals(data), workerDecodes: d.stats.workerDecodes, refused }))
await d.close()
`)
  // Plain node: no tsx anywhere, as the installed daemon runs.
  const { stdout } = await run(process.execPath, [script], { cwd: out, env: { ...process.env, NODE_OPTIONS: '' } })
  t.same(JSON.parse(stdout.trim()), { ok: true, workerDecodes: 2, refused: 'ERR_CHUNK_DIGEST_MISMATCH' })
})
