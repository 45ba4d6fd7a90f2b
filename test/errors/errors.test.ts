/**
 * The error model holds: one class per code, every code raised somewhere in src/, and every code
 * translated in both tables (gRPC status, errno) — the fastify "every code is documented" idea.
 */
import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { status as Status } from '@grpc/grpc-js'
import * as errors from '../../src/errors.js'
import { ERROR_CLASSES, StargzError, type ErrorCode } from '../../src/errors.js'
import { ERRNO_BY_CODE, EIO, ENOENT, toErrno } from '../../src/fuse/errno.js'
import { GRPC_BY_CODE, grpcCode } from '../../src/grpc/status.js'

const SRC = new URL('../../src/', import.meta.url).pathname

async function sources(dir: string): Promise<Array<{ path: string; text: string }>> {
  const out: Array<{ path: string; text: string }> = []
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name)
    if (d.isDirectory()) out.push(...await sources(p))
    else if (d.name.endsWith('.ts')) out.push({ path: relative(SRC, p), text: await readFile(p, 'utf8') })
  }
  return out
}

const codes = Object.keys(ERROR_CLASSES) as ErrorCode[]

t.test('one class per code, and it carries that code', async (t) => {
  const classes = new Set(Object.values(ERROR_CLASSES))
  t.equal(classes.size, codes.length, 'no class serves two codes')
  // Every StargzError subclass exported by src/errors.ts is in the table.
  for (const [name, v] of Object.entries(errors)) {
    if (typeof v === 'function' && v.prototype instanceof StargzError) t.ok(classes.has(v as never), `${name} is the class of a code`)
  }
  const samples: errors.StargzError[] = [
    new errors.NotFoundError('x'), new errors.AlreadyExistsError('x'), new errors.FailedPreconditionError('x'),
    new errors.InvalidArgumentError('x'), new errors.UnavailableError('x'), new errors.FooterError('x'),
    new errors.TocError('rule', 'x'), new errors.TocDigestError('sha256:a', 'sha256:b'),
    new errors.ChunkDigestError('f', 0, 'sha256:a', 'sha256:b'), new errors.TarError('x'), new errors.LimitError('x'),
    new errors.RegistryError('x'), new errors.AuthError('x'), new errors.FetchError('x'), new errors.TimeoutError('x'),
    new errors.ManifestError('x'), new errors.ConfigError('k', 'x'),
  ]
  t.same(samples.map((e) => e.code).sort(), [...codes].sort(), 'the samples cover every code once')
  for (const e of samples) t.equal(ERROR_CLASSES[e.code], e.constructor, `${e.code} → ${e.name}`)
})

t.test('structured fields instead of parsing messages', async (t) => {
  const d = new errors.ChunkDigestError('bin/sh', 4096, 'sha256:aa', 'sha256:bb')
  t.same([d.path, d.offset, d.expected, d.actual], ['bin/sh', 4096, 'sha256:aa', 'sha256:bb'])
  const m = errors.digestMismatch('sha256:aa', 'sha256:bb', { registry: 'r', repository: 'x/y' })
  t.same([m.code, m.expected, m.actual, m.context.repository], ['ERR_FETCH', 'sha256:aa', 'sha256:bb', 'x/y'])
  t.match(m.message, /expected sha256:aa, got sha256:bb \(registry r, repository x\/y\)/)
  const to = new errors.TimeoutError('late', { ms: 5, mountpoint: '/m', mayHoldMount: true })
  t.same([to.ms, to.mountpoint, to.mayHoldMount], [5, '/m', true])
  t.equal(new errors.TimeoutError('x').mayHoldMount, false)
  t.ok(errors.isPreempted(new errors.UnavailableError('p', { preempted: true })))
  t.notOk(errors.isPreempted(new errors.UnavailableError('p')))
  t.ok(errors.isNotEstargz(new errors.FooterError('x')))
  t.notOk(errors.isNotEstargz(new errors.TocError('r', 'x')))
})

t.test('every code is raised somewhere in src/', async (t) => {
  const files = (await sources(SRC)).filter((f) => f.path !== 'errors.ts')
  const all = files.map((f) => f.text).join('\n')
  // Factories that build a code's class count as raising it.
  const factories: Partial<Record<ErrorCode, string[]>> = { ERR_FETCH: ['digestMismatch('], ERR_UNAVAILABLE: ['preemptedError('] }
  for (const code of codes) {
    const cls = ERROR_CLASSES[code].name
    const ways = [`new ${cls}(`, ...(factories[code] ?? [])]
    t.ok(ways.some((w) => all.includes(w)), `${code} (${cls}) is raised`)
  }
})

t.test('no module defines its own error class beside src/errors.ts', async (t) => {
  // src/reader/errors.ts keeps ChunkFetchError/ChunkVerifyError until the bytepath workstream
  // folds them into FetchError / ChunkDigestError (their fields are there for it).
  const pending = new Set(['reader/errors.ts'])
  const names = Object.values(ERROR_CLASSES).map((c) => c.name).concat('StargzError')
  const re = new RegExp(`class \\w+ extends (${names.join('|')})\\b`)
  for (const f of await sources(SRC)) {
    if (f.path === 'errors.ts' || pending.has(f.path)) continue
    t.notOk(re.test(f.text), `${f.path} defines no error class`)
  }
})

t.test('both tables translate every code, and translation uses them', async (t) => {
  t.same(Object.keys(GRPC_BY_CODE).sort(), [...codes].sort(), 'gRPC table is total')
  t.same(Object.keys(ERRNO_BY_CODE).sort(), [...codes].sort(), 'errno table is total')
  for (const code of codes) {
    t.type(GRPC_BY_CODE[code], 'number', `${code} has a gRPC status`)
    t.ok(ERRNO_BY_CODE[code] < 0, `${code} has a negative errno`)
  }
  t.equal(grpcCode(new errors.NotFoundError('x')), Status.NOT_FOUND)
  t.equal(grpcCode(new errors.UnavailableError('x')), Status.UNAVAILABLE)
  t.equal(grpcCode(new Error('plain')), Status.UNKNOWN)
  t.equal(toErrno(new errors.NotFoundError('x')), ENOENT)
  t.equal(toErrno(new errors.FetchError('x')), EIO)
  t.equal(toErrno(new Error('plain')), EIO)
})
