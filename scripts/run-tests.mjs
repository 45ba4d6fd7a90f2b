#!/usr/bin/env node
// Runs the tap suite and closes with the one summary line CI reads: "N passed, N failed".
// tap's own reporter prints its totals as a TAP comment; we count test points from the TAP
// stream ourselves so the line is true even when a test file crashes before tap summarises it.
//
//   node scripts/run-tests.mjs [files...]          everything (npm test), or the files given
//   node scripts/run-tests.mjs --unit [files...]   npm run test:unit: no root, no daemons, seconds
//   node scripts/run-tests.mjs --e2e [files...]    npm run test:e2e: the rest
//   node scripts/run-tests.mjs --list-unit | --list-e2e
//
// A test file is e2e when it, or a helper it imports from harness/ or test/ (followed through
// relative imports), imports one of E2E_MODULES: what starts docker-registry, containerd, the
// daemon, a FUSE mount or a network namespace. Imports of other product modules are not
// followed: importing a module that could mount is not mounting. A file can also say it itself
// with a line "// stargzd-test: e2e" (for what imports cannot show, e.g. running mount(8)) or
// "// stargzd-test: unit". Unit files must pass as an unprivileged user without those components.
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..')

export const E2E_MODULES = [
  'src/bench/registry.ts', // docker-registry (harness/registry.ts uses it)
  'src/bench/containerd.ts', // containerd + runc
  'src/bench/stargzd.ts', // the daemon, as the benchmark runs it
  'src/bench/run-bench.ts', // all of the above
  'harness/stargzd.ts', // the daemon, as tests run it
  'src/fuse/layer-fs.ts', // FUSE mounts (/dev/fuse, root)
  'src/fuse/native.ts',
  'src/mount/image-mount.ts', // FUSE + overlayfs
  'src/fs/lazy-filesystem.ts',
  'src/bench/link/wan-link.ts', // network namespaces, tc
  'src/bench/link/netns.ts',
]
const MARKER = /^\s*\/\/ stargzd-test: (e2e|unit)\b/m

function testFiles(dir = join(REPO, 'test')) {
  const out = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) { if (e.name !== 'fixtures' && e.name !== 'node_modules') out.push(...testFiles(p)) }
    else if (e.name.endsWith('.test.ts')) out.push(relative(REPO, p))
  }
  return out.sort()
}

const IMPORT = /(?:from\s+|import\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g
const closureCache = new Map()

/** Does `file` (repo-relative .ts) reach an e2e module or carry the e2e marker? */
export function isE2E(file, seen = new Set()) {
  if (closureCache.has(file)) return closureCache.get(file)
  if (seen.has(file)) return false
  seen.add(file)
  if (E2E_MODULES.includes(file)) return true
  const abs = join(REPO, file)
  if (!existsSync(abs)) return false
  const text = readFileSync(abs, 'utf8')
  const marked = MARKER.exec(text)
  let hit = marked ? marked[1] === 'e2e' : false
  if (!marked) {
    for (const m of text.matchAll(IMPORT)) {
      const target = relative(REPO, resolve(dirname(abs), m[1])).replace(/\.js$/, '.ts')
      const follow = E2E_MODULES.includes(target) || target.startsWith('harness/') || target.startsWith('test/')
      if (follow && isE2E(target, seen)) { hit = true; break }
    }
  }
  if (seen.size === 1 || hit) closureCache.set(file, hit)
  return hit
}

const argv = process.argv.slice(2)
const mode = argv.find((a) => ['--unit', '--e2e', '--list-unit', '--list-e2e'].includes(a))
let args = argv.filter((a) => a !== mode)
if (mode) {
  const given = args.filter((a) => a.endsWith('.ts'))
  const rest = args.filter((a) => !a.endsWith('.ts'))
  const e2e = mode.endsWith('e2e')
  const chosen = (given.length > 0 ? given : testFiles()).filter((f) => isE2E(relative(REPO, resolve(f))) === e2e)
  if (mode.startsWith('--list')) {
    for (const f of chosen) console.log(f)
    process.exit(0)
  }
  if (chosen.length === 0) {
    console.log('0 passed, 0 failed')
    process.exit(0)
  }
  args = [...rest, ...chosen]
}

const child = spawn(process.execPath, [join(REPO, 'node_modules/tap/dist/esm/run.mjs'), ...args], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: process.env,
  cwd: REPO,
})
let passed = 0
let failed = 0
let skipped = 0
const rl = createInterface({ input: child.stdout })
rl.on('line', (line) => {
  process.stdout.write(line + '\n')
  // Leaf test points only: a subtest's own "ok" line is followed by its children, so count
  // lines that are not immediately a subtest summary (those carry "# time=").
  const m = /^(\s*)(ok|not ok) \d+ - (.*)$/.exec(line)
  if (!m) return
  const rest = m[3] ?? ''
  if (/# time=/.test(rest)) {
    // A subtest/file summary: count it only when it failed without failing children
    // (crash, timeout), which the leaf counts would otherwise miss.
    if (m[2] === 'not ok' && /# (timeout|exit|signal)|code=/.test(rest)) failed++
    return
  }
  if (/# SKIP|# TODO/i.test(rest)) { skipped++; return }
  if (m[2] === 'ok') passed++
  else failed++
})
child.on('close', (code, signal) => {
  if ((code !== 0 || signal) && failed === 0) failed = 1
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
  process.exit(failed > 0 ? 1 : 0)
})
