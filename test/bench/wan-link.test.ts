import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createWanLink } from '../../src/bench/link/wan-link.js'
import { HOST_IF_PREFIX, NETNS_PREFIX, sweepStaleNamespaces, tbfArgs } from '../../src/bench/link/netns.js'
import { buildOciLayout, gzipEncoder, pushOciLayout } from '../../src/bench/image/oci-image.js'
import { writeTar } from '../../src/bench/image/tar-pack.js'
import { startRegistry } from '../../harness/registry.js'

const execFileP = promisify(execFile)
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const sh = async (cmd: string, args: string[]): Promise<string> => (await execFileP(cmd, args, { encoding: 'utf8' })).stdout

const canNetns = process.getuid?.() === 0 && existsSync('/usr/sbin/ip') && existsSync('/usr/sbin/tc')
const skip = canNetns ? false : 'needs root, ip and tc'

async function gone(t: Test, r: { netns: string; hostIf: string }): Promise<void> {
  t.notOk((await sh('ip', ['netns', 'list'])).includes(r.netns), `netns ${r.netns} removed`)
  t.notOk((await sh('ip', ['-o', 'link', 'show'])).includes(r.hostIf), `veth ${r.hostIf} removed`)
}

t.test('tbfArgs', async (t) => {
  t.same(tbfArgs('eth9', { rateMbit: 200 }), ['qdisc', 'replace', 'dev', 'eth9', 'root', 'tbf', 'rate', '200000kbit', 'burst', '131072', 'latency', '50ms'])
  t.equal(tbfArgs('x', { rateMbit: 1000 })[9], '500000', 'burst grows with the rate')
  t.throws(() => tbfArgs('x', { rateMbit: 0 }), RangeError)
})

t.test('bytes pass intact both ways through netns + tbf + delay, and all is torn down', { skip }, async (t) => {
  // Upstream: echoes with a prefix, so both directions carry payload; and counts its clients.
  const upstream = createServer({ allowHalfOpen: true }, (s: Socket) => {
    const h = createHash('sha256')
    let n = 0
    s.on('data', (d: Buffer) => { h.update(d); n += d.length; s.write(d) })
    s.on('end', () => s.end(`\n${n} ${h.digest('hex')}`))
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => upstream.close())
  const link = await createWanLink({ rateMbit: 400, rttMs: 10, upstream: { host: '127.0.0.1', port: (upstream.address() as { port: number }).port } })
  t.teardown(() => link.close())
  const r = link.resources

  t.equal(link.host, '127.0.0.1')
  t.ok((await sh('ip', ['netns', 'list'])).includes(r.netns), 'netns exists')
  t.match(r.hostAddr, /^169\.254\./)
  t.match(await sh('tc', ['qdisc', 'show', 'dev', r.hostIf]), /tbf .*rate 400Mbit/, 'host end shaped')
  t.match(await sh('ip', ['netns', 'exec', r.netns, 'tc', 'qdisc', 'show', 'dev', r.nsIf]), /tbf .*rate 400Mbit/, 'namespace end shaped')
  t.match(await sh('ip', ['-n', r.netns, '-4', 'addr', 'show', 'dev', r.nsIf]), new RegExp(`inet ${r.nsAddr.replace(/\./g, '\\.')}/30`))

  const data = randomBytes(4 * 1024 * 1024 + 3)
  const runOne = async (): Promise<void> => {
    const c = connect({ host: link.host, port: link.port, allowHalfOpen: true })
    const parts: Buffer[] = []
    c.on('data', (d: Buffer) => parts.push(d))
    for (let off = 0; off < data.length; off += 256 * 1024) c.write(data.subarray(off, off + 256 * 1024))
    c.end()
    await once(c, 'end')
    const out = Buffer.concat(parts)
    t.equal(sha(out.subarray(0, data.length)), sha(data), 'echoed bytes are the bytes sent')
    t.equal(out.subarray(data.length).toString(), `\n${data.length} ${sha(data)}`, 'upstream saw exactly the bytes sent')
  }
  await Promise.all([runOne(), runOne(), runOne()])
  const stats = await link.stats()
  t.equal(stats.connections, 3)
  t.equal(stats.bytesUp, 3 * data.length)
  t.ok(stats.bytesDown > 3 * data.length)

  await link.close()
  await link.close() // idempotent
  await gone(t, r)
})

t.test('HTTP through the link, including a refused upstream', { skip }, async (t) => {
  const body = randomBytes(3 * 1000 * 1000)
  const server = createHttpServer((req, res) => res.end(req.url === '/blob' ? body : 'pong'))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const link = await createWanLink({ upstream: { host: '127.0.0.1', port: (server.address() as { port: number }).port } })
  t.teardown(() => link.close())
  const res = await fetch(`http://${link.address}/blob`)
  t.equal(sha(Buffer.from(await res.arrayBuffer())), sha(body))
  t.equal(await (await fetch(`http://${link.address}/ping`)).text(), 'pong')

  // An upstream that is not there: the client sees its connection closed, the link survives.
  const dead = createServer()
  dead.listen(0, '127.0.0.1')
  await once(dead, 'listening')
  const deadPort = (dead.address() as { port: number }).port
  dead.close()
  const link2 = await createWanLink({ rttMs: 2, upstream: { host: '127.0.0.1', port: deadPort } })
  t.teardown(() => link2.close())
  await t.rejects(fetch(`http://${link2.address}/`))
  await link2.close()
  await gone(t, link2.resources)
})

t.test('a registry push and inspect through the link', { skip: skip || (existsSync('/usr/bin/skopeo') ? false : 'no skopeo') }, async (t) => {
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const [host, port] = reg.host.split(':') as [string, string]
  const link = await createWanLink({ rateMbit: 100, rttMs: 10, upstream: { host, port: Number(port) } })
  t.teardown(() => link.close())
  const dir = await mkdtemp(join(tmpdir(), 'bench-wan-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeTar(join(dir, 'l.tar'), [{ type: 'file', name: 'blob', size: 1 << 20, data: () => [randomBytes(1 << 20)] }])
  const layout = await buildOciLayout({ dir: join(dir, 'oci'), tag: 't', layers: [{ tar: join(dir, 'l.tar') }], config: { Cmd: ['true'] }, encoder: await gzipEncoder() })
  await pushOciLayout(layout, `${link.address}/bench/via-link:t`)
  const { stdout } = await execFileP('skopeo', ['inspect', '--tls-verify=false', `docker://${link.address}/bench/via-link:t`])
  t.equal(JSON.parse(stdout).Digest, layout.manifest.digest)
  const stats = await link.stats()
  t.ok(stats.bytesUp > layout.layers[0]!.size, 'the push went through the link')
})

t.test('sweepStaleNamespaces removes what a dead process left, and nothing live', { skip }, async (t) => {
  // The live link first: createWanLink sweeps too, and would take the stale one made below.
  const live = await createWanLink({ rttMs: 1, upstream: { host: '127.0.0.1', port: 9 } })
  t.teardown(() => live.close())
  // A pid that surely belongs to no one: a child that has exited.
  const child = spawn('true')
  await once(child, 'exit')
  const id = randomBytes(4).toString('hex')
  const stale = `${NETNS_PREFIX}${child.pid}-${id}`
  const hostIf = `${HOST_IF_PREFIX}${id}`
  t.teardown(async () => {
    await execFileP('ip', ['link', 'del', hostIf]).catch(() => undefined)
    await execFileP('ip', ['netns', 'del', stale]).catch(() => undefined)
  })
  await sh('ip', ['netns', 'add', stale])
  await sh('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `sgzn${id}`, 'netns', stale])
  const removed = await sweepStaleNamespaces()
  t.ok(removed.includes(stale), 'stale netns swept')
  t.notOk(removed.includes(live.resources.netns), 'live netns kept')
  await gone(t, { netns: stale, hostIf })
  t.ok((await sh('ip', ['netns', 'list'])).includes(live.resources.netns))
})

for (const how of ['exit', 'SIGTERM'] as const) {
  t.test(`a process that ends by ${how} without close() leaves nothing behind`, { skip }, async (t) => {
    // The link's 'exit' handler (and installSignalCleanup's handler, which then re-raises) must clean up.
    const code = `
      import { createWanLink, installSignalCleanup } from ${JSON.stringify(new URL('../../src/bench/link/wan-link.ts', import.meta.url).href)}
      installSignalCleanup()
      const l = await createWanLink({ rttMs: 1, upstream: { host: '127.0.0.1', port: 9 } })
      console.log(JSON.stringify(l.resources))
      if (${JSON.stringify(how)} === 'exit') process.exit(0)
      setInterval(() => {}, 1000)
    `
    const dir = await mkdtemp(join(tmpdir(), 'bench-wan-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', code], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
    const [line] = (await once(child.stdout, 'data')) as [Buffer]
    const r = JSON.parse(line.toString().trim()) as { netns: string; hostIf: string }
    t.ok(r.netns.startsWith(NETNS_PREFIX))
    if (how === 'SIGTERM') child.kill('SIGTERM')
    const [exitCode, signal] = (await once(child, 'exit')) as [number | null, string | null]
    t.same([exitCode, signal], how === 'exit' ? [0, null] : [null, 'SIGTERM'], 'the default action of the signal still happens')
    await gone(t, r)
  })
}
