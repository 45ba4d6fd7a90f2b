#!/usr/bin/env node
// Runs the tap suite and closes with the one summary line CI reads: "N passed, N failed".
// tap's own reporter prints its totals as a TAP comment; we count test points from the TAP
// stream ourselves so the line is true even when a test file crashes before tap summarises it.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'

const args = process.argv.slice(2)
const child = spawn(process.execPath, ['node_modules/tap/dist/esm/run.mjs', ...args], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: process.env,
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
