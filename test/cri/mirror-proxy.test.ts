/**
 * A real pull-through cache as a hosts.toml mirror (the path P2P mirrors such as Spegel and
 * Dragonfly use): docker-registry in `proxy:` mode with the upstream test registry as its
 * remoteurl, configured for both containerd's CRI and stargzd. The image is pulled by its
 * upstream name; the manifest, the TOC and every lazy read come through the mirror. Once the
 * mirror holds the layer, the upstream is stopped, and a container that reads a file nobody read
 * before still gets the right bytes: lazily, from the mirror alone.
 */
// stargzd-test: e2e
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startBenchContainerd } from '../../src/bench/containerd.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { startRegistry } from '../../harness/registry.js'
import { daemonScratch } from '../../harness/stargzd.js'
import { criClient, pushBusyboxImages, pushPauseImage, sandboxConfig, waitExited, writeHostsToml } from '../../harness/cri.js'
import { readFile, stat, writeFile } from 'node:fs/promises'

t.setTimeout(900_000)

t.test('lazy reads through a pull-through mirror keep working after the upstream is gone', async (t) => {
  const { dir, start, sock } = await daemonScratch(t, 'sgd-mirror-')
  const upstream = await startRegistry()
  t.teardown(() => upstream.close())
  const mirror = await startRegistry({ proxyRemoteUrl: upstream.url })
  t.teardown(() => mirror.close())
  // A logging proxy in front of the mirror, to see what is read through it.
  const mirrorLog = await startFaultProxy(mirror.url)
  t.teardown(() => mirrorLog.close())

  const secret = randomBytes(4 << 20)
  const md5 = createHash('md5').update(secret).digest('hex')
  const ref = `${upstream.host}/test/busybox:esgz`
  const pauseRef = `${upstream.host}/test/pause:1`
  await pushPauseImage(dir, pauseRef)
  const images = await pushBusyboxImages(dir, ref, undefined, { extraFiles: { 'data/unread.bin': secret } })

  const hostsDir = join(dir, 'certs.d')
  await writeHostsToml(hostsDir, upstream.host, mirrorLog.host)
  const cfg = join(dir, 'config.toml')
  // No background fetch and no prefetch: every byte stargzd reads is read on demand.
  await writeFile(cfg, 'no_background_fetch = true\nnoprefetch = true\n')
  const sgd = await start(['--config', cfg, '--log-level', 'debug', '--hosts-dir', hostsDir])
  const ctrd = await startBenchContainerd({ stargzSocket: sock, cri: { sandboxImage: pauseRef, hostsDir } })
  t.teardown(() => ctrd.close())
  const cri = criClient(ctrd.address)
  t.teardown(() => cri.close())

  await cri.image('PullImage', { image: { image: pauseRef } })
  mirrorLog.clearLog()
  await cri.image('PullImage', { image: { image: ref } })
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared' && l.layer === images.esgzLayer), 'the layer was mounted lazily')
  const layerGets = (): number => mirrorLog.log.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${images.esgzLayer}`)).length
  t.ok(mirrorLog.log.some((r) => r.method === 'GET' && /\/manifests\//.test(r.path)), 'the manifest came through the mirror')
  const early = mirrorLog.log.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${images.esgzLayer}`))
  t.ok(early.length > 0, `the TOC was read through the mirror (statuses ${early.map((r) => r.status).join(',')})`)

  // The mirror fetches the whole blob from the upstream once it is first asked for it.
  const hex = images.esgzLayer.slice('sha256:'.length)
  const stored = join(mirror.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
  for (let i = 0; i < 600; i++) {
    const st = await stat(stored).catch(() => undefined)
    if (st?.size === images.esgzSize) break
    await sleep(100)
  }
  t.equal((await stat(stored).catch(() => undefined))?.size, images.esgzSize, 'the mirror holds the whole layer')
  await upstream.close()
  const dead = await fetch(`${upstream.url}/v2/`).then(() => 'up', () => 'down')
  t.equal(dead, 'down', 'the upstream registry is stopped')

  // A pod whose container reads a file that no one has read yet: lazy reads, mirror only.
  const before = layerGets()
  const logIndex = mirrorLog.log.length
  const logDir = join(dir, 'pod-logs')
  const sandbox = sandboxConfig('mirror-pod', logDir)
  const pod = await cri.runtime('RunPodSandbox', { config: sandbox })
  const c = await cri.runtime('CreateContainer', {
    pod_sandbox_id: pod.pod_sandbox_id,
    config: { metadata: { name: 'reader', attempt: 0 }, image: { image: ref }, command: ['/bin/busybox'], args: ['md5sum', '/data/unread.bin'], log_path: 'reader.log' },
    sandbox_config: sandbox,
  })
  await cri.runtime('StartContainer', { container_id: c.container_id })
  const st = await waitExited(cri, String(c.container_id))
  t.equal(st.exit_code, 0, 'the container exited 0')
  t.match(await readFile(join(logDir, 'reader.log'), 'utf8'), new RegExp(`stdout F ${md5}  /data/unread.bin`), 'and read the right bytes')
  t.ok(layerGets() > before, `those bytes were read lazily through the mirror after the upstream stopped (${layerGets() - before} GETs)`)
  const late = mirrorLog.log.slice(logIndex).filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${images.esgzLayer}`))
  t.ok(late.every((r) => r.range !== undefined && r.status === 206), 'as range requests the mirror answered from its cache (206)')

  await cri.runtime('StopContainer', { container_id: c.container_id, timeout: 10 })
  await cri.runtime('RemoveContainer', { container_id: c.container_id })
  await cri.runtime('StopPodSandbox', { pod_sandbox_id: pod.pod_sandbox_id })
  await cri.runtime('RemovePodSandbox', { pod_sandbox_id: pod.pod_sandbox_id })
})
