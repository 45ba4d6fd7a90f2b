/**
 * The start-up benchmark's three images, as OCI image layouts built locally and cached:
 *
 *   busybox  1 layer:  busybox-static rootfs (scripts/fixtures/busybox-rootfs.sh)      `echo hello`
 *   python3  2 layers: bookworm minbase + python3 (python-rootfs.sh), a small /app    `python3 -c 'print("hello")'`
 *   huge     3 layers: bookworm + python3 + gcc/g++ (rootfs.sh, ≥ 500 MB); a generated model/data
 *            tree (~960 MB: safetensors-like shards, .npy-like arrays, a tokenizer); a generated
 *            source tree of 30,000 small .py files (~150 MB) + /app.                 `python3 -c 'print("hello")'`
 *            ≥ 1.5 GB uncompressed, like the reference's 1.7 GB image.
 *
 * Cache: $STARGZD_FIXTURE_DIR/images/<builder key>/<name>-<inputs key>/ (default fixture dir
 * /var/tmp/stargzd-fixtures). The builder key is the sha256 of this module's sources and of the
 * layer encoder's id, so editing the builder rebuilds; the inputs key names the rootfs tars, which
 * carry their own builders' keys. A build writes to a sibling `.partial-*` dir and renames it into
 * place; two concurrent builders both build, one rename wins and the other's copy is dropped.
 */
import { publishDir } from '../publish-dir.js'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { buildOciLayout, gzipEncoder, layoutSizes, type BuiltLayout, type LayerEncoder, type RuntimeConfig } from './oci-image.js'
import { binaryFile, Prng, textFile } from './seeded-data.js'
import { writeTar, type TarEntry } from './tar-pack.js'

const execFileP = promisify(execFile)

export const BENCH_IMAGES = ['busybox', 'python3', 'huge'] as const
export type BenchImageName = (typeof BENCH_IMAGES)[number]

export interface Workload {
  /** Arguments for `ctr run … IMAGE ID <args>`: the process to time. */
  args: string[]
  /** What it prints on success. */
  expect: string
}

export interface BenchImage {
  name: BenchImageName
  /** The OCI layout on disk; push it with pushOciLayout(image.layout, …). */
  layout: BuiltLayout
  workloads: Record<string, Workload>
  sizes: { compressed: number; uncompressed: number }
  /** Seconds the build took (when it was built, not when it came from the cache). */
  buildSeconds: number
  /** True when this call found it in the cache. */
  cached: boolean
}

export interface BuildImageOptions {
  encoder?: LayerEncoder
  fixtureDir?: string
  log?: (msg: string) => void
}

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const HELLO_PY: Workload = { args: ['python3', '-c', 'print("hello")'], expect: 'hello' }

const FIXTURE_SCRIPTS = ['busybox-rootfs.sh', 'python-rootfs.sh', 'rootfs.sh']

/**
 * Where the rootfs builders are: scripts/fixtures/ of a stargzd source tree. They are shell
 * scripts around debootstrap and busybox-static and do not ship in the package, so an installed
 * `stargz bench` finds them through STARGZD_SOURCE_DIR (a checkout) or, run from a checkout
 * (source or dist/), in the nearest ancestor that has them.
 */
export function findFixtureScripts(from: string = dirname(fileURLToPath(import.meta.url)), env: NodeJS.ProcessEnv = process.env): string {
  const has = (root: string): boolean => existsSync(join(root, 'scripts', 'fixtures', 'lib.sh'))
  const given = env.STARGZD_SOURCE_DIR
  if (given !== undefined && given !== '') {
    if (has(given)) return join(given, 'scripts', 'fixtures')
    throw new Error(`STARGZD_SOURCE_DIR=${given} has no scripts/fixtures/lib.sh: point it at a stargzd source checkout`)
  }
  for (let dir = from; ; dir = dirname(dir)) {
    if (has(dir)) return join(dir, 'scripts', 'fixtures')
    if (dirname(dir) === dir) break
  }
  throw new Error(`stargz bench builds its images from rootfs tars made by ${FIXTURE_SCRIPTS.map((f) => `scripts/fixtures/${f}`).join(', ')} ` +
    `of a stargzd source checkout (they need debootstrap and busybox-static), and none is above ${from}. ` +
    'Set STARGZD_SOURCE_DIR to a checkout, or run `npm run stargz -- bench` in one.')
}

/** Run a fixture script; it prints the path of its cached tar on stdout. */
async function fixtureTar(script: string, fixtureDir: string): Promise<string> {
  const path = join(findFixtureScripts(), script)
  try {
    const { stdout } = await execFileP('bash', [path], {
      env: { ...process.env, STARGZD_FIXTURE_DIR: fixtureDir }, maxBuffer: 64 * 1024 * 1024,
    })
    const tar = stdout.trim().split('\n').pop() ?? ''
    if (!tar.endsWith('.tar') || !existsSync(tar)) throw new Error(`printed ${JSON.stringify(stdout.trim())}, not a tar path`)
    return tar
  } catch (e) {
    const err = e as Error & { stderr?: string }
    throw new Error(`fixture ${script} failed: ${(err.stderr ?? '').trim().split('\n').slice(-5).join(' | ') || err.message}`, { cause: e })
  }
}

/**
 * Hashes this folder's modules as they are loaded (.ts from a checkout, .js from dist/), so an edit
 * rebuilds; a checkout and an installed tree therefore keep separate caches.
 */
function builderKey(encoder: LayerEncoder): string {
  const h = createHash('sha256')
  const ext = extname(fileURLToPath(import.meta.url))
  for (const f of ['images', 'oci-image', 'seeded-data', 'tar-pack']) {
    h.update(f).update(readFileSync(fileURLToPath(new URL(`./${f}${ext}`, import.meta.url))))
  }
  return h.update(encoder.id).digest('hex').slice(0, 16)
}

// ---- generated layers ------------------------------------------------------------------------

function dirs(paths: string[]): TarEntry[] {
  return paths.map((name) => ({ type: 'dir', name }))
}

function bufferFile(name: string, data: Buffer, mode?: number): TarEntry {
  return { type: 'file', name, size: data.length, data: () => [data], ...(mode !== undefined ? { mode } : {}) }
}

const MIB = 1024 * 1024

/** The python3 image's app layer: a few small files under /app. */
function* pythonAppLayer(): Generator<TarEntry> {
  yield* dirs(['app'])
  yield bufferFile('app/hello.py', Buffer.from('print("hello")\n'))
  yield bufferFile('app/requirements.txt', Buffer.from('# nothing beyond the standard library\n'))
}

/**
 * The huge image's model/data layer (~960 MB). The block mix is chosen so the whole image gzips to
 * roughly what the reference's 1.7 GB image must have been: its full pull spent about a third of
 * 75 s on a 25 MB/s link, i.e. ~0.6 GB on the wire (fp16 weights alone would gzip to ~86%).
 */
function* modelLayer(): Generator<TarEntry> {
  const model = 'models/bench-7b'
  yield* dirs(['models', model, 'data'])
  yield bufferFile(`${model}/config.json`, Buffer.from(JSON.stringify({
    architectures: ['BenchForCausalLM'], hidden_size: 4096, num_hidden_layers: 32, vocab_size: 32000, torch_dtype: 'float16',
  }, null, 2) + '\n'))
  yield bufferFile(`${model}/tokenizer.json`, textFile('tokenizer', 4 * MIB))
  const shards = 6
  for (let i = 1; i <= shards; i++) {
    const name = `${model}/model-${String(i).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`
    const size = 120 * MIB + i * 4096
    yield { type: 'file', name, size, data: () => binaryFile(name, size, { weights: 0.35, sparse: 0.6, noise: 0.05 }) }
  }
  for (let i = 0; i < 96; i++) {
    const name = `data/shard-${String(i).padStart(3, '0')}.npy`
    const size = 2 * MIB
    yield { type: 'file', name, size, data: () => binaryFile(name, size, { weights: 0.1, sparse: 0.9, noise: 0 }) }
  }
}

const READ_DATA_PY = `import hashlib, json, os
h = hashlib.sha256()
with open("/models/bench-7b/config.json", "rb") as f:
    h.update(f.read())
with open("/models/bench-7b/model-00003-of-00006.safetensors", "rb") as f:
    f.seek(64 * 1024 * 1024)
    h.update(f.read(1024 * 1024))
for i in (0, 17, 42, 95):
    with open("/data/shard-%03d.npy" % i, "rb") as f:
        h.update(f.read())
print("hello", h.hexdigest()[:16])
`

/** The huge image's top layer: ~30,000 small .py files (~150 MB) and the app. */
function* sourceTreeLayer(): Generator<TarEntry> {
  const prng = new Prng('source-tree')
  yield* dirs(['app', 'app/lib'])
  yield bufferFile('app/hello.py', Buffer.from('print("hello")\n'))
  yield bufferFile('app/read_data.py', Buffer.from(READ_DATA_PY))
  for (let p = 0; p < 150; p++) {
    const pkg = `app/lib/pkg${String(p).padStart(3, '0')}`
    yield* dirs([pkg])
    yield bufferFile(`${pkg}/__init__.py`, Buffer.from(`# package ${p}\n`))
    for (let m = 0; m < 199; m++) {
      const name = `${pkg}/mod${String(m).padStart(3, '0')}.py`
      // Mostly small, a long tail: 200 B .. ~18 KiB, mean ~5 KB.
      const size = Math.floor(200 + 18000 * prng.float() ** 2.5)
      yield bufferFile(name, textFile(name, size))
    }
  }
}

// ---- image specs -----------------------------------------------------------------------------

interface LayerSpec {
  /** A fixture script's tar, or a generated one. */
  fixture?: string
  generate?: () => Iterable<TarEntry>
  label: string
  createdBy: string
}

interface ImageSpec {
  layers: LayerSpec[]
  config: RuntimeConfig
  workloads: Record<string, Workload>
}

const SPECS: Record<BenchImageName, ImageSpec> = {
  busybox: {
    layers: [{ fixture: 'busybox-rootfs.sh', label: 'busybox', createdBy: 'busybox-static rootfs' }],
    config: { Env: [PATH_ENV], Cmd: ['sh'], WorkingDir: '/' },
    workloads: { hello: { args: ['echo', 'hello'], expect: 'hello' } },
  },
  python3: {
    layers: [
      { fixture: 'python-rootfs.sh', label: 'python-rootfs', createdBy: 'debootstrap bookworm minbase + python3' },
      { generate: pythonAppLayer, label: 'app', createdBy: 'COPY app/ /app/' },
    ],
    config: { Env: [PATH_ENV, 'LANG=C.UTF-8'], Cmd: ['python3', '/app/hello.py'], WorkingDir: '/app' },
    workloads: { hello: HELLO_PY },
  },
  huge: {
    layers: [
      { fixture: 'rootfs.sh', label: 'rootfs', createdBy: 'debootstrap bookworm minbase + python3, gcc, g++' },
      { generate: modelLayer, label: 'model', createdBy: 'COPY models/ data/ /' },
      { generate: sourceTreeLayer, label: 'source-tree', createdBy: 'COPY app/ /app/' },
    ],
    config: { Env: [PATH_ENV, 'LANG=C.UTF-8'], Cmd: ['python3', '/app/hello.py'], WorkingDir: '/app' },
    workloads: {
      hello: HELLO_PY,
      readData: { args: ['python3', '/app/read_data.py'], expect: 'hello' },
    },
  },
}

interface Meta {
  name: BenchImageName
  layout: BuiltLayout
  workloads: Record<string, Workload>
  buildSeconds: number
}

/** Build (or find in the cache) one benchmark image. */
export async function buildBenchImage(name: BenchImageName, opts: BuildImageOptions = {}): Promise<BenchImage> {
  const spec = SPECS[name]
  const fixtureDir = opts.fixtureDir ?? process.env.STARGZD_FIXTURE_DIR ?? '/var/tmp/stargzd-fixtures'
  const log = opts.log ?? (() => undefined)
  const encoder = opts.encoder ?? (await gzipEncoder())
  const started = performance.now()

  // Fixture tars first: their paths carry their builders' keys and so go into the inputs key.
  const tars = new Map<LayerSpec, string>()
  for (const l of spec.layers) if (l.fixture) tars.set(l, await fixtureTar(l.fixture, fixtureDir))
  const inputsKey = createHash('sha256').update(JSON.stringify([...tars.values()].map((p) => p.slice(p.lastIndexOf('/') + 1)))).digest('hex').slice(0, 12)
  const root = join(fixtureDir, 'images', builderKey(encoder))
  const final = join(root, `${name}-${inputsKey}`)
  const metaPath = (dir: string): string => join(dir, 'bench-image.json')

  const fromMeta = (m: Meta, dir: string, cached: boolean): BenchImage => ({
    name, layout: { ...m.layout, dir: join(dir, 'oci') }, workloads: m.workloads,
    sizes: layoutSizes(m.layout), buildSeconds: m.buildSeconds, cached,
  })
  if (existsSync(metaPath(final))) {
    const m = JSON.parse(await readFile(metaPath(final), 'utf8')) as Meta
    log(`${name}: cached at ${final}`)
    return fromMeta(m, final, true)
  }

  const partial = join(root, `.partial-${name}-${randomBytes(6).toString('hex')}`)
  await mkdir(join(partial, 'work'), { recursive: true })
  try {
    const layers = []
    for (const l of spec.layers) {
      let tar = tars.get(l)
      if (!tar) {
        tar = join(partial, 'work', `${l.label}.tar`)
        const t0 = performance.now()
        const size = await writeTar(tar, (l.generate as () => Iterable<TarEntry>)())
        log(`${name}: generated ${l.label} layer, ${(size / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      }
      layers.push({ tar, createdBy: l.createdBy, comment: l.label })
    }
    const t0 = performance.now()
    const layout = await buildOciLayout({
      dir: join(partial, 'oci'), tag: name, layers, config: spec.config, encoder,
      onLayer: (b, i) => log(`${name}: layer ${i} ${b.digest.slice(7, 19)} ${(b.uncompressedSize / 1e6).toFixed(1)} MB → ${(b.size / 1e6).toFixed(1)} MB`),
    })
    log(`${name}: encoded ${layers.length} layers in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    await rm(join(partial, 'work'), { recursive: true, force: true })
    const meta: Meta = { name, layout: { ...layout, dir: '' }, workloads: spec.workloads, buildSeconds: (performance.now() - started) / 1000 }
    await writeFile(metaPath(partial), JSON.stringify(meta, null, 2) + '\n')
    await publishDir(partial, final, metaPath(final))
    return fromMeta(meta, final, false)
  } catch (e) {
    await rm(partial, { recursive: true, force: true })
    throw e
  }
}
