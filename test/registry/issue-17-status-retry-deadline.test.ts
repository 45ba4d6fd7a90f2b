/**
 * Issue #17: a 5xx/429 burst is retried with backoff until the request deadline, not a fixed
 * count. The soak saw a burst of 20 503s outlast `[blob] max_retries` (5 retries, ~1 s of
 * backoff) and a container read fail with EIO although the registry was back within 3 s.
 * Real registry behind the fault proxy; real sleeps (the backoff is what is under test).
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { FetchError } from '../../src/registry/errors.js'
import type { TransportOptions } from '../../src/registry/transport.js'

const reg = await startRegistry()
t.teardown(() => reg.close())
const proxy = await startFaultProxy(reg.url)
t.teardown(() => proxy.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-retry17-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

const data = randomBytes(256 << 10)
const ref = `${proxy.host}/retry/test:v1`

function newClient(t: { teardown(fn: () => unknown): void }, transport: TransportOptions): RegistryClient {
  const c = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}), transport })
  t.teardown(() => c.close())
  return c
}

const { digest } = await newClient(t, {}).pushBlob(ref, data)
const blobGets = (): number => proxy.log.filter((l) => l.method === 'GET' && l.path.includes('/blobs/')).length

t.beforeEach(() => {
  proxy.faults.statusBurst = undefined
  proxy.clearLog()
})

t.test('a burst longer than max_retries but shorter than the deadline is invisible', async (t) => {
  const blob = await newClient(t, { maxRetries: 2, backoffBaseMs: 5, backoffMaxMs: 50, requestDeadlineMs: 20_000 }).blob(ref, digest, data.length)
  proxy.faults.statusBurst = { status: 503, count: 12 }
  t.ok((await blob.read(1000, 5000)).equals(data.subarray(1000, 6000)), 'the right bytes once the burst is over')
  t.equal(blobGets(), 13, '12 answers of 503 retried, the 13th request served')
  proxy.clearLog()
  proxy.faults.statusBurst = { status: 429, count: 8, retryAfter: '0' }
  t.ok((await blob.read(0, 100)).equals(data.subarray(0, 100)), '429 with Retry-After: 0, 8 times, then served')
  t.equal(blobGets(), 9)
})

t.test('an outage longer than the deadline fails at the deadline with the registry\'s answer', async (t) => {
  const blob = await newClient(t, { maxRetries: 1, backoffBaseMs: 5, backoffMaxMs: 100, requestDeadlineMs: 1500 }).blob(ref, digest, data.length)
  proxy.faults.statusBurst = { status: 503, count: Number.MAX_SAFE_INTEGER }
  const t0 = Date.now()
  const e = await blob.read(0, 100).then(() => undefined, (err: unknown) => err as Error)
  const took = Date.now() - t0
  t.ok(e instanceof FetchError, `a FetchError naming the status (got ${e?.name}: ${e?.message})`)
  t.match(e?.message, /HTTP 503/)
  t.ok(blobGets() > 2, `retried past max_retries within the deadline (${blobGets()} requests)`)
  // Not a timing assertion on speed: the call must end, and not long after its own deadline.
  t.ok(took < 15_000, `gave up around the deadline (${took} ms)`)
})

t.test('connection errors keep the count (a dead mirror is left quickly)', async (t) => {
  const c = newClient(t, { maxRetries: 2, backoffBaseMs: 1, backoffMaxMs: 2, requestDeadlineMs: 60_000 })
  const blob = await c.blob(ref, digest, data.length)
  proxy.faults.resetMidBody = 100
  const e = await blob.read(0, 100_000).then(() => undefined, (err: unknown) => err as Error)
  proxy.faults.resetMidBody = 0
  t.ok(e instanceof Error, `failed: ${e?.message}`)
  t.equal(blobGets(), 3, 'maxRetries + 1 attempts')
})

t.test('retryStatusUntilDeadline: false keeps the counted retries for statuses', async (t) => {
  const blob = await newClient(t, { maxRetries: 2, backoffBaseMs: 1, backoffMaxMs: 2, requestDeadlineMs: 60_000, retryStatusUntilDeadline: false }).blob(ref, digest, data.length)
  proxy.faults.statusBurst = { status: 503, count: 50 }
  const e = await blob.read(0, 100).then(() => undefined, (err: unknown) => err as Error)
  t.match(e?.message, /HTTP 503/)
  t.equal(blobGets(), 3)
})

t.test('a trickled body is cut like a stalled one and retried within the deadline', async (t) => {
  // One byte every 20 ms never trips a 500 ms gap timeout; without the throughput floor this read
  // would run into its 20 s deadline and fail.
  const blob = await newClient(t, { maxRetries: 2, backoffBaseMs: 1, backoffMaxMs: 2, bodyTimeoutMs: 500, requestDeadlineMs: 20_000 }).blob(ref, digest, data.length)
  proxy.faults.trickleBody = 1
  t.ok((await blob.read(0, 8192)).equals(data.subarray(0, 8192)), 'the right bytes from the retry')
  t.equal(blobGets(), 2, 'the trickled request, then one that was served')
  t.equal(proxy.log.find((l) => l.fault === 'trickle')?.clientClosed, true, 'the trickled request was cut')
})
