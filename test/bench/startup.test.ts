/**
 * `stargz bench` harness: report/chart units, and a smoke run on the busybox image only — one run
 * of each mode (legacy, estargz-noopt, estargz) through a small link (50 Mbit/s, 5 ms) — asserting
 * structure (every phase measured, bytes fetched, files written, the chart is well-formed SVG)
 * and that everything is torn down (no netns, no mounts, no processes, no temp dirs). No timing
 * assertions.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { escapeXml, niceScale, renderStackedBarChart } from '../../src/bench/chart.js'
import { BENCH_MODES } from '../../src/bench/measure.js'
import { mountsUnder, pidsMentioning } from '../../src/bench/proc.js'
import { chartSvg, markdownTable, median, summarize, type BenchResults, type CellResult } from '../../src/bench/report.js'
import { runBench } from '../../src/bench/run-bench.js'

const execFileP = promisify(execFile)

/** Minimal XML well-formedness: one root, every tag closed in order, attributes quoted. */
function checkXml(xml: string): string[] {
  const problems: string[] = []
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '')
  const stack: string[] = []
  let roots = 0
  const re = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|(<)/g
  let m: RegExpExecArray | null
  let last = 0
  while ((m = re.exec(body)) !== null) {
    const between = body.slice(last, m.index)
    if (/[<>]/.test(between) || /&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(between)) problems.push(`bad text near ${JSON.stringify(between.slice(0, 40))}`)
    last = re.lastIndex
    if (m[5]) { problems.push(`stray < at ${m.index}`); continue }
    if (m[0].startsWith('<!--')) continue
    const [, close, name, , selfClose] = m
    if (close) {
      if (stack.pop() !== name) problems.push(`</${name}> does not close the open tag`)
    } else {
      if (stack.length === 0) roots++
      if (!selfClose) stack.push(name as string)
    }
  }
  if (body.slice(last).trim() !== '') problems.push('text after the root element')
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(', ')}`)
  if (roots !== 1) problems.push(`${roots} root elements`)
  return problems
}

t.test('median, niceScale, escapeXml', async (t) => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 2, 3]), 2.5)
  t.ok(Number.isNaN(median([])))
  t.same(niceScale(7.3), { max: 8, step: 2 })
  t.same(niceScale(0.62), { max: 0.8, step: 0.2 })
  t.same(niceScale(23), { max: 25, step: 5 })
  t.equal(escapeXml('a<b & "c"'), 'a&lt;b &amp; &quot;c&quot;')
})

t.test('chart and table from synthetic results', async (t) => {
  const sample = (pull: number, bytes: number): CellResult['samples'][number] => ({
    pull, create: 0.1, run: 0.3, total: pull + 0.4, runToExit: 0.35, bytesFetched: bytes, bytesSent: 1000, connections: 2, firstLine: 'hello',
  })
  const cells: CellResult[] = [
    { image: 'py<3>', mode: 'legacy', samples: [sample(10, 90e6), sample(12, 90e6), sample(11, 90e6)], errors: [] },
    { image: 'py<3>', mode: 'estargz-noopt', samples: [sample(1, 6e6)], errors: [] },
    { image: 'py<3>', mode: 'estargz', samples: [], errors: ['boom\nmore'] },
  ]
  summarize(cells)
  t.equal(cells[0]?.median?.pull, 11)
  t.equal(cells[0]?.median?.total, 11.4)
  t.equal(cells[1]?.speedup?.toFixed(2), (11.4 / 1.4).toFixed(2))
  t.equal(cells[2]?.median, undefined)
  const r: BenchResults = {
    version: 1, startedAt: '', finishedAt: '', host: { cpus: 2, kernel: 'k', node: 'v20', containerd: 'c' },
    link: { rateMbit: 200, rttMs: 20 }, runs: 3, dropCaches: true, backgroundFetch: true, notes: ['n'],
    images: [{ name: 'py<3>', workload: ['python3'], uncompressedBytes: 1e8, forms: { legacy: { manifest: 'sha256:x', compressedBytes: 9e7, layers: 2 } } }],
    results: cells,
  }
  const md = markdownTable(r)
  t.match(md, /\| image \| mode \| snapshotter \| pull \(s\) \| create \(s\) \| run \(s\) \| total \(s\) \| MB fetched \| blob req \| ours\/ref total \(pull \/ create \/ run\) \| speed-up vs legacy \|/)
  t.match(md, /\| py<3> \| estargz-noopt \| overlayfs \| 1\.00 \| 0\.10 \| 0\.30 \| 1\.40 \| 6\.0 \| — \| — \| 8\.1× \|/)
  t.match(md, /\| py<3> \| estargz \| overlayfs \| — \| — \| — \| failed/)
  t.match(md, /Failures:\n- py<3> \/ estargz: boom\n/)
  const svg = chartSvg(r)
  t.same(checkXml(svg), [], 'chart is well-formed XML')
  t.match(svg, /<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  t.match(svg, /py&lt;3&gt;/, 'labels escaped')
  t.match(svg, /failed/)
  t.same(checkXml(renderStackedBarChart({ title: 'empty', panels: [] })), [], 'an empty chart is well-formed too')
})

t.test('ours/reference ratios per phase, from cells of the same run', async (t) => {
  const sample = (pull: number, create: number, run: number, blobRequests: number): CellResult['samples'][number] => ({
    pull, create, run, total: pull + create + run, runToExit: run, bytesFetched: 5e6, bytesSent: 1000, connections: 2, blobRequests, firstLine: 'hello',
  })
  const cells: CellResult[] = [
    { image: 'py', mode: 'ctr-remote', daemon: 'reference', samples: [sample(0.4, 0.2, 0.4, 9), sample(0.5, 0.2, 0.4, 11), sample(0.6, 0.2, 0.4, 10)], errors: [] },
    { image: 'py', mode: 'ctr-remote', daemon: 'ours', samples: [sample(0.2, 0.1, 0.5, 4), sample(0.3, 0.1, 0.5, 5), sample(0.25, 0.1, 0.5, 6)], errors: [] },
  ]
  summarize(cells)
  t.equal(cells[0]?.vsReference, undefined, 'the reference has no ratio of its own')
  const v = cells[1]?.vsReference
  t.equal(v?.pull.toFixed(2), (0.25 / 0.5).toFixed(2))
  t.equal(v?.create.toFixed(2), '0.50')
  t.equal(v?.run.toFixed(2), '1.25')
  t.equal(v?.total.toFixed(3), (0.85 / 1.1).toFixed(3))
  t.equal(cells[1]?.median?.blobRequests, 5, 'median blob requests')
  const md = markdownTable({
    version: 1, startedAt: '', finishedAt: '', host: { cpus: 2, kernel: 'k', node: 'v20', containerd: 'c' },
    link: { rateMbit: 200, rttMs: 20 }, runs: 3, dropCaches: true, backgroundFetch: true, notes: [], images: [], results: cells,
  })
  t.match(md, /\| py \| ctr-remote \| reference \| 0\.50 \|/)
  t.match(md, /\| py \| ctr-remote \| stargzd \| 0\.25 \| 0\.10 \| 0\.50 \| 0\.85 \| 5\.0 \| 5 \| \*\*0\.77\*\* \(0\.50 \/ 0\.50 \/ 1\.25\) \|/)
})

const tools = ['/usr/sbin/ip', '/usr/sbin/tc', '/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/ctr-remote', '/usr/bin/docker-registry', '/usr/bin/skopeo']
const missing = tools.filter((p) => !existsSync(p))
const skip = process.getuid?.() !== 0 ? 'needs root' : missing.length > 0 ? `needs ${missing.join(', ')}` : false

t.test('smoke: busybox, 1 run, the four local modes (legacy, estargz-noopt, estargz, gzindex), 50 Mbit/s 5 ms link', { skip, timeout: 600_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'sgzbt-'))
  const out = join(base, 'out')
  const scratch = join(base, 's')
  await mkdir(scratch)
  t.teardown(() => rm(base, { recursive: true, force: true }))
  const logs: string[] = []
  const { results, markdown, failed } = await runBench({
    images: ['busybox'], modes: BENCH_MODES.filter((m) => !m.startsWith('ctr-remote')), runs: 1, rateMbit: 50, rttMs: 5, outDir: out,
    fixtureDir: process.env.STARGZD_FIXTURE_DIR ?? '/var/tmp/stargzd-fixtures',
    dropCaches: false, backgroundFetch: true, baseDir: scratch, log: (m) => logs.push(m),
  })
  t.notOk(failed, `no run failed: ${results.results.flatMap((c) => c.errors).join('\n')}\n${logs.join('\n')}`)
  t.equal(results.results.length, 4, 'one cell per mode')
  t.same(results.results.map((c) => c.mode), ['legacy', 'estargz-noopt', 'estargz', 'gzindex'])
  const legacyForm = results.images[0]?.forms.legacy
  t.ok(legacyForm && legacyForm.compressedBytes > 0, 'legacy image size known')
  for (const c of results.results) {
    t.equal(c.samples.length, 1, `${c.mode}: one sample`)
    const s = c.samples[0]
    if (!s) continue
    for (const k of ['pull', 'create', 'run', 'total'] as const) t.ok(Number.isFinite(s[k]) && s[k] > 0, `${c.mode}: ${k} measured (${s[k]})`)
    t.ok(Math.abs(s.total - (s.pull + s.create + s.run)) < 1e-9, `${c.mode}: total = pull + create + run`)
    t.ok(s.bytesFetched > 0, `${c.mode}: bytes fetched through the link (${s.bytesFetched})`)
    t.match(s.firstLine, /^hello/, `${c.mode}: first output line`)
    t.ok(c.median && c.speedup !== undefined, `${c.mode}: median and speed-up`)
    if (c.mode === 'legacy') {
      t.ok(s.bytesFetched >= (legacyForm?.compressedBytes ?? Infinity) - 2048, `legacy fetched at least the image (${s.bytesFetched} ≥ ${legacyForm?.compressedBytes})`)
      t.equal(s.stargzdFetchedBytes, undefined, 'no stargzd in legacy mode')
    } else {
      t.ok((s.stargzdFetchedBytes ?? 0) > 0, `${c.mode}: stargzd counted fetched bytes (${s.stargzdFetchedBytes})`)
    }
  }
  t.ok((results.images[0]?.forms.estargz?.prioritizedFiles ?? 0) >= 1, 'the optimized image has prioritized files')

  for (const c of results.results) t.ok((c.samples[0]?.blobRequests ?? 0) > 0, `${c.mode}: blob requests counted from the registry's access log`)
  t.same((await readdir(out)).sort(), ['chart.svg', 'results.json', 'results.md'])
  const json = JSON.parse(await readFile(join(out, 'results.json'), 'utf8')) as BenchResults
  t.equal(json.results.length, 4, 'results.json has the cells')
  t.equal(await readFile(join(out, 'results.md'), 'utf8'), markdown)
  t.match(markdown, /\| busybox \| legacy \|/)
  t.match(markdown, /first output line/, 'the table says run is to the first output line')
  const svg = await readFile(join(out, 'chart.svg'), 'utf8')
  t.same(checkXml(svg), [], 'chart.svg is well-formed XML')
  t.match(svg, /^<\?xml[^>]*>\n<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  t.equal((svg.match(/<rect [^>]*><title>(legacy|estargz-noopt|estargz) (pull|create|run): /g) ?? []).length, 9, 'three stacked segments per mode')

  // Torn down: netns of this process, mounts, processes, temp dirs.
  const netns = (await execFileP('ip', ['netns', 'list'], { encoding: 'utf8' })).stdout
  t.notMatch(netns, new RegExp(`stargzd-wan-${process.pid}-`), 'no netns of ours left')
  t.same(await mountsUnder(scratch), [], 'nothing mounted under the scratch dir')
  t.same(await pidsMentioning(scratch, { substring: true }), [], 'no containerd, stargzd, registry or shim left')
  t.same(await readdir(scratch), [], 'every per-run dir removed')
})

const refBin = '/var/tmp/stargz-reference/bin/containerd-stargz-grpc'
t.test('smoke: the reference daemon beside ours, interleaved, ctr-remote form, with a timeline', { skip: skip || (existsSync(refBin) ? false : `needs ${refBin} (bash ../shared/reference/build.sh)`), timeout: 900_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'sgzbr-'))
  const out = join(base, 'out')
  const scratch = join(base, 's')
  await mkdir(scratch)
  t.teardown(() => rm(base, { recursive: true, force: true }))
  const logs: string[] = []
  const { results, failed } = await runBench({
    images: ['busybox'], modes: ['ctr-remote-noopt'], daemons: ['reference', 'ours'], timeline: true, runs: 1, rateMbit: 50, rttMs: 5, outDir: out,
    fixtureDir: process.env.STARGZD_FIXTURE_DIR ?? '/var/tmp/stargzd-fixtures',
    dropCaches: false, backgroundFetch: true, baseDir: scratch, log: (m) => logs.push(m),
  })
  t.notOk(failed, `no run failed: ${results.results.flatMap((c) => c.errors).join('\n')}\n${logs.join('\n')}`)
  t.same(results.results.map((c) => c.daemon), ['reference', 'ours'], 'one cell per snapshotter')
  const runOrder = logs.filter((l) => l.startsWith('run ')).map((l) => l.split(' ').pop())
  t.same(runOrder, ['reference', 'ours'], 'reference first, then ours')
  for (const c of results.results) {
    t.match(c.samples[0]?.firstLine, /^hello/, `${c.daemon}: the workload ran`)
    t.ok((c.samples[0]?.blobRequests ?? 0) > 0, `${c.daemon}: blob requests counted`)
  }
  t.ok(results.results[1]?.vsReference && results.results[1].vsReference.total > 0, 'ours has a ratio to the reference')
  const files = (await readdir(out)).sort()
  t.ok(files.includes('timeline-busybox-ctr-remote-noopt-reference.txt') && files.includes('timeline-busybox-ctr-remote-noopt-ours.txt'), `timelines written: ${files.join(', ')}`)
  const refTimeline = await readFile(join(out, 'timeline-busybox-ctr-remote-noopt-reference.txt'), 'utf8')
  t.match(refTimeline, /reference -grpc-log/, 'the reference timeline has its gRPC call log')
  t.match(refTimeline, /Prepare/, 'with the Prepare calls')
  t.same(await mountsUnder(scratch), [], 'nothing mounted under the scratch dir')
  t.same(await pidsMentioning(scratch, { substring: true }), [], 'no daemon, containerd, registry or shim left')
  t.same(await readdir(scratch), [], 'every per-run dir removed')
})
