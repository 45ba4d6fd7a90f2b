/**
 * Kubernetes' path end to end, without kubelet: a real CRI client (grpc-js over our runtime.v1
 * proto) drives containerd 1.6's CRI plugin, configured with `snapshotter = "stargz"` and
 * `disable_snapshot_annotations = false`, with stargzd as its proxy snapshotter (real FUSE) and a
 * real docker-registry. PullImage → RunPodSandbox (host network, locally built pause image) →
 * CreateContainer → StartContainer → the container's log file → Stop/Remove. The eStargz layer
 * must arrive as a remote snapshot carrying the containerd.io/snapshot/cri.* labels and be read
 * with range requests only; a plain gzip image must fall back and still run.
 */
// stargzd-test: e2e
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CRI_NAMESPACE, startBenchContainerd } from '../../src/bench/containerd.js'
import { run } from '../../src/bench/proc.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { startRegistry } from '../../harness/registry.js'
import { daemonScratch } from '../../harness/stargzd.js'
import { criClient, pushBusyboxImages, pushPauseImage, sandboxConfig, waitExited, writeHostsToml } from '../../harness/cri.js'

t.setTimeout(900_000)

t.test('CRI: pull, run a pod and its containers lazily through containerd\'s CRI plugin', async (t) => {
  const { dir, start, sock } = await daemonScratch(t, 'sgd-cri-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  const hostsDir = join(dir, 'certs.d')
  await writeHostsToml(hostsDir, proxy.host)
  const pauseRef = `${proxy.host}/test/pause:1`
  const esgzRef = `${proxy.host}/test/busybox:esgz`
  const plainRef = `${proxy.host}/test/busybox:plain`
  await pushPauseImage(dir, `${registry.host}/test/pause:1`)
  const images = await pushBusyboxImages(dir, `${registry.host}/test/busybox:esgz`, `${registry.host}/test/busybox:plain`)

  const sgd = await start(['--log-level', 'debug', '--hosts-dir', hostsDir])
  const ctrd = await startBenchContainerd({ stargzSocket: sock, cri: { sandboxImage: pauseRef, hostsDir } })
  t.teardown(() => ctrd.close())
  const cri = criClient(ctrd.address)
  t.teardown(() => cri.close())
  const context = async (): Promise<string> => `containerd:\n${await ctrd.logTail(30)}\nstargzd:\n${sgd.logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`

  const v = await cri.runtime('Version', { version: 'v1' })
  t.equal(v.runtime_api_version, 'v1', `CRI runtime.v1 answers (${String(v.runtime_name)} ${String(v.runtime_version)})`)

  // PullImage: the eStargz layer becomes a remote snapshot.
  proxy.clearLog()
  const pulled = await cri.image('PullImage', { image: { image: esgzRef } })
  t.match(pulled.image_ref, /^sha256:/, 'PullImage returned the image id')
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared' && l.layer === images.esgzLayer), 'stargzd: remote-snapshot-prepared for the eStargz layer')
  const blobGets = proxy.log.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${images.esgzLayer}`))
  t.ok(blobGets.length > 0, 'the layer was read from the registry')
  t.notOk(blobGets.some((r) => r.range === undefined), 'never a whole-blob GET of the layer (lazy)')

  // The snapshot containerd's CRI asked for carries the cri.* labels, and it is a remote one.
  const snaps = await ctrOut(['--namespace', CRI_NAMESPACE, 'snapshots', '--snapshotter', 'stargz', 'ls'])
  const infos: Record<string, string>[] = []
  for (const key of snaps.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]).filter((k): k is string => !!k)) {
    const info = JSON.parse(await ctrOut(['--namespace', CRI_NAMESPACE, 'snapshots', '--snapshotter', 'stargz', 'info', key])) as { Labels?: Record<string, string> }
    infos.push(info.Labels ?? {})
  }
  const remote = infos.find((l) => l['containerd.io/snapshot/cri.layer-digest'] === images.esgzLayer)
  t.ok(remote, 'a snapshot carries containerd.io/snapshot/cri.layer-digest of the eStargz layer')
  t.equal(remote?.['containerd.io/snapshot/cri.image-ref'], esgzRef, 'and containerd.io/snapshot/cri.image-ref')
  t.ok(remote?.['containerd.io/snapshot/cri.image-layers']?.includes(images.esgzLayer), 'and containerd.io/snapshot/cri.image-layers')
  t.equal(remote?.['containerd.io/snapshot/remote'], 'remote snapshot', 'committed as a remote snapshot')

  // A plain gzip image falls back to a normal snapshot with a logged reason.
  await cri.image('PullImage', { image: { image: plainRef } })
  const fb = sgd.logs.find((l) => l.msg === 'remote-snapshot-fallback' && l.layer === images.plainLayer)
  t.ok(fb, `stargzd: remote-snapshot-fallback for the plain gzip layer (${String(fb?.reason)})`)

  // The pod: host network, the pause image from sandbox_image (pulled by containerd itself).
  const logDir = join(dir, 'pod-logs')
  const sandbox = sandboxConfig('lazy-pod', logDir)
  const pod = await cri.runtime('RunPodSandbox', { config: sandbox }).catch(async (e: unknown) => { throw new Error(`${(e as Error).message}\n${await context()}`) })
  const podId = String(pod.pod_sandbox_id)
  t.ok(podId, 'RunPodSandbox (host network) started the pod')

  const runIn = async (name: string, image: string, args: string[]): Promise<{ id: string; log: string; exit: unknown }> => {
    const c = await cri.runtime('CreateContainer', {
      pod_sandbox_id: podId,
      config: { metadata: { name, attempt: 0 }, image: { image }, command: ['/bin/busybox'], args, log_path: `${name}.log` },
      sandbox_config: sandbox,
    })
    const id = String(c.container_id)
    await cri.runtime('StartContainer', { container_id: id })
    const st = await waitExited(cri, id)
    return { id, log: await readFile(join(logDir, `${name}.log`), 'utf8'), exit: st.exit_code }
  }
  const lazy = await runIn('lazy', esgzRef, ['sh', '-c', 'echo hello from a lazy layer; ls /bin | wc -l'])
  t.equal(lazy.exit, 0, 'the eStargz container exited 0')
  t.match(lazy.log, / stdout F hello from a lazy layer$/m, 'its log file (CRI format) has its output')
  const plain = await runIn('plain', plainRef, ['echo', 'hello from a plain layer'])
  t.equal(plain.exit, 0, 'the plain gzip container exited 0')
  t.match(plain.log, / stdout F hello from a plain layer$/m, 'its log file has its output')

  // Stop and remove everything through CRI.
  for (const id of [lazy.id, plain.id]) {
    await cri.runtime('StopContainer', { container_id: id, timeout: 10 })
    await cri.runtime('RemoveContainer', { container_id: id })
  }
  await cri.runtime('StopPodSandbox', { pod_sandbox_id: podId })
  await cri.runtime('RemovePodSandbox', { pod_sandbox_id: podId })
  const left = await ctrOut(['--namespace', CRI_NAMESPACE, 'containers', 'ls', '-q'])
  t.equal(left.trim(), '', 'no CRI containers are left')
  for (const ref of [esgzRef, plainRef]) await cri.image('RemoveImage', { image: { image: ref } })
  const list = await cri.image('ListImages', {})
  t.notOk(((list.images ?? []) as { repo_tags?: string[] }[]).some((i) => i.repo_tags?.includes(esgzRef)), 'RemoveImage removed the eStargz image')

  async function ctrOut(args: string[]): Promise<string> {
    const r = await run('ctr', ['--address', ctrd.address, ...args])
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: ${r.stderr}\n${await context()}`)
    return r.stdout
  }
})
