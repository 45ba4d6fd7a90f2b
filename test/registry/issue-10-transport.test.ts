/**
 * Issue #10 §3, transport: one regression test per finding, against the real docker-registry
 * behind the fault proxy. Each failed (or hung until its tap timeout) before its fix.
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy, type LoggedRequest } from '../../harness/fault-proxy.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { FetchError, RegistryError, RegistryTimeoutError } from '../../src/registry/errors.js'
import type { TransportOptions } from '../../src/registry/transport.js'
import { IGNORED_RANGE_MAX_SKIP } from '../../src/registry/blob.js'

const reg = await startRegistry()
t.teardown(() => reg.close())
const proxy = await startFaultProxy(reg.url)
t.teardown(() => proxy.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-i10-transport-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const ref = `${proxy.host}/i10/transport:v1`

function newClient(t: { teardown(fn: () => unknown): void }, transport: TransportOptions = {}): RegistryClient {
  const c = new RegistryClient({
    plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}),
    transport: { maxRetries: 1, backoffBaseMs: 1, backoffMaxMs: 2, ...transport },
  })
  t.teardown(() => c.close())
  return c
}

const small = randomBytes(1 << 20)
// Big enough that a range near its end lies past IGNORED_RANGE_MAX_SKIP.
const big = randomBytes(IGNORED_RANGE_MAX_SKIP + (4 << 20))
const setup = newClient(t)
const smallDigest = (await setup.pushBlob(ref, small)).digest
const bigDigest = (await setup.pushBlob(ref, big)).digest

t.beforeEach(() => {
  Object.assign(proxy.faults, {
    resetMidBody: 0, statusBurst: undefined, stallBody: 0, refuseMultiRange: false, redirect: false,
    ignoreRange: 0, claimLength: undefined, endlessErrorBody: 0, trickleBody: 0,
  })
  proxy.clearLog()
})

function blobGets(): LoggedRequest[] { return proxy.log.filter((l) => l.method === 'GET' && l.path.includes('/blobs/')) }

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) { if (cond()) return; await sleep(20) }
  throw new Error(`timed out waiting for: ${what}`)
}

t.test('content-length-prealloc: a 206 claiming 1 TiB is refused before anything is allocated', async (t) => {
  const blob = await newClient(t).blob(ref, smallDigest, small.length)
  proxy.faults.claimLength = { value: String(2 ** 40), count: 5 }
  const e = await blob.read(100, 4096).then(() => undefined, (err: unknown) => err as Error)
  // Before: Buffer.allocUnsafe(2^40) threw a RangeError, wrapped as a network failure.
  t.ok(e instanceof RegistryError, `a RegistryError (got ${e?.name}: ${e?.message})`)
  t.match(e?.message, /exceeds the limit of 4096/)
  t.notMatch(String((e as { cause?: unknown })?.cause ?? ''), /RangeError|out of range/)
  t.equal(blobGets().length, 1, 'not retried: the server lied, it did not fail')
})

t.test('200-to-range-buffers-blob: a 200 to a range request is read only as far as the range', async (t) => {
  // The proxy drops Range (200, whole blob) and stalls after half the body: a client that
  // waits for the whole blob never finishes; one that stops at the range's end does.
  const blob = await newClient(t, { bodyTimeoutMs: 3000 }).blob(ref, smallDigest, small.length)
  proxy.faults.ignoreRange = 5
  proxy.faults.stallBody = 5
  const got = await blob.read(1000, 4096)
  t.ok(got.equals(small.subarray(1000, 5096)), 'the right bytes')
  t.equal(blobGets()[0]?.status, 200, 'the server did ignore Range')
  t.ok(blob.stats().bytesFetched < small.length / 2, `read ${blob.stats().bytesFetched} bytes, not the blob`)
  await until('the rest of the body is cut', () => blobGets()[0]?.clientClosed === true)
})

t.test('200-to-range-buffers-blob: a 200 to a range deep in the blob is refused, not downloaded', async (t) => {
  const blob = await newClient(t).blob(ref, bigDigest, big.length)
  proxy.faults.ignoreRange = 1
  const off = big.length - 1000
  const e = await blob.read(off, 100).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof FetchError, `a FetchError (got ${e?.name}: ${e?.message})`)
  t.match(e?.message, /ignored Range.*refusing to download/)
  t.ok(blob.stats().bytesFetched < 1 << 20, `read ${blob.stats().bytesFetched} bytes of ${big.length}`)
  // And it still works once the server honours Range.
  t.ok((await blob.read(off, 100)).equals(big.subarray(off, off + 100)))
})

t.test('error-body-drained-forever: an error body is destroyed at 64 KiB', { timeout: 60_000 }, async (t) => {
  const blob = await newClient(t).blob(ref, smallDigest, small.length)
  proxy.faults.endlessErrorBody = 1
  const e = await blob.read(0, 100).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof RegistryError, `a RegistryError (got ${e?.name})`)
  t.equal((e as RegistryError).status, 400)
  const entry = blobGets()[0]
  await until('the connection is closed by the client', () => entry?.clientClosed === true)
  t.ok((entry?.bytesSent ?? 0) < 64 << 20, `the server got to write ${entry?.bytesSent} bytes only`)
})

t.test('fetching-timeout-is-only-a-gap-timeout: a trickled body hits the request deadline', { timeout: 60_000 }, async (t) => {
  // One byte every 20 ms never trips a 5 s gap timeout; 4096 bytes would take 80 s.
  const blob = await newClient(t, { bodyTimeoutMs: 5000, requestDeadlineMs: 1500, maxRetries: 3 }).blob(ref, smallDigest, small.length)
  proxy.faults.trickleBody = 10
  const e = await blob.read(0, 4096).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof RegistryTimeoutError, `a RegistryTimeoutError (got ${e?.name}: ${e?.message})`)
  t.match(e?.message, /request deadline of 1\.5 s/)
  await until('the trickled request is cut', () => blobGets()[0]?.clientClosed === true)
})

t.test('read-ignores-abort-signal: the HTTP request is aborted when its last waiter gives up', { timeout: 60_000 }, async (t) => {
  const blob = await newClient(t, { bodyTimeoutMs: 120_000, requestDeadlineMs: 120_000 }).blob(ref, smallDigest, small.length)
  proxy.faults.stallBody = 1
  const a = new AbortController()
  const b = new AbortController()
  const ra = blob.read(0, 200_000, a.signal)
  const rb = blob.read(0, 200_000, b.signal)
  await until('the stalled request reached the server', () => blobGets().length === 1)
  a.abort(new Error('waiter a gave up'))
  await t.rejects(ra, /waiter a gave up/)
  t.equal(blob.stats().deduplicated, 1, 'b joined a\'s request')
  t.notOk(blobGets()[0]?.clientClosed, 'b still waits: the request goes on')
  b.abort(new Error('waiter b gave up'))
  await t.rejects(rb, /waiter b gave up/)
  await until('the request is aborted once nobody waits', () => blobGets()[0]?.clientClosed === true)
  // A later read of the same range starts afresh rather than joining the aborted flight.
  t.ok((await blob.read(0, 200_000)).equals(small.subarray(0, 200_000)))
  t.equal(blobGets().length, 2)
})
