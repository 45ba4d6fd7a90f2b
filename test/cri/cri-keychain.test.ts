/**
 * The CRI keychain end to end: a private docker-registry (htpasswd), no Docker config on the
 * node, stargzd with `[cri_keychain] enable_keychain = true` serving runtime.v1.ImageService on
 * its own socket in front of containerd's CRI. A CRI client (in kubelet's place, as if started
 * with --image-service-endpoint) pulls with an AuthConfig through the proxy: containerd gets the
 * call unchanged, stargzd keeps the credentials and uses them for the layer's range reads, so the
 * layer is mounted lazily and the container runs. The password never reaches stargzd's log.
 */
// stargzd-test: e2e
import t from 'tap'
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startBenchContainerd } from '../../src/bench/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { daemonScratch } from '../../harness/stargzd.js'
import { criClient, pushBusyboxImages, pushPauseImage, sandboxConfig, waitExited, writeHostsToml } from '../../harness/cri.js'

t.setTimeout(900_000)

t.test('CRI keychain: PullImage credentials from kubelet authenticate lazy reads', async (t) => {
  const user = { username: 'kube', password: `pw-${Math.random().toString(36).slice(2)}-secret` }
  const { dir, start, sock } = await daemonScratch(t, 'sgd-crikc-')
  const registry = await startRegistry({ htpasswd: [user] })
  t.teardown(() => registry.close())
  const hostsDir = join(dir, 'certs.d')
  await writeHostsToml(hostsDir, registry.host)
  const creds = { creds: user }
  const pauseRef = `${registry.host}/private/pause:1`
  const esgzRef = `${registry.host}/private/busybox:esgz`
  await pushPauseImage(dir, pauseRef, creds)
  const images = await pushBusyboxImages(dir, esgzRef, undefined, creds)

  // No Docker config on this node: the only credentials stargzd can have are kubelet's.
  const emptyDockerConfig = join(dir, 'no-docker-config')
  await mkdir(emptyDockerConfig)
  const savedDockerConfig = process.env.DOCKER_CONFIG
  process.env.DOCKER_CONFIG = emptyDockerConfig
  t.teardown(() => { if (savedDockerConfig === undefined) delete process.env.DOCKER_CONFIG; else process.env.DOCKER_CONFIG = savedDockerConfig })

  // stargzd first (containerd dials its proxy snapshotter at start-up), pointing its proxy at a
  // path that becomes containerd's CRI socket once containerd is up: the backend is dialled lazily,
  // as on a node where stargzd starts before containerd.
  const backendPath = join(dir, 'containerd.sock')
  const proxySock = join(dir, 'cri-image.sock')
  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, [
    '[cri_keychain]',
    'enable_keychain = true',
    `image_service_path = ${JSON.stringify(backendPath)}`,
    `proxy_path = ${JSON.stringify(proxySock)}`,
    '',
  ].join('\n'))
  const sgd = await start(['--config', cfg, '--log-level', 'debug', '--hosts-dir', hostsDir])
  await sgd.waitFor((l) => l.msg === 'cri image service proxy listening')
  const ctrd = await startBenchContainerd({ stargzSocket: sock, cri: { sandboxImage: pauseRef, hostsDir } })
  t.teardown(() => ctrd.close())
  await symlink(ctrd.address, backendPath)

  // kubelet: --container-runtime-endpoint=containerd, --image-service-endpoint=the proxy.
  const cri = criClient(ctrd.address, proxySock)
  t.teardown(() => cri.close())

  await t.rejects(cri.image('PullImage', { image: { image: esgzRef } }), /401|unauthorized|authoriz/i, 'without credentials the private registry refuses the pull (through the proxy, status unchanged)')

  const pause = await cri.image('PullImage', { image: { image: pauseRef }, auth: { auth: Buffer.from(`${user.username}:${user.password}`).toString('base64'), server_address: `http://${registry.host}` } })
  t.match(pause.image_ref, /^sha256:/, 'PullImage of the pause image with AuthConfig.auth')
  const pulled = await cri.image('PullImage', { image: { image: esgzRef }, auth: { username: user.username, password: user.password, server_address: `http://${registry.host}` } })
  t.match(pulled.image_ref, /^sha256:/, 'PullImage of the eStargz image with AuthConfig username/password')
  t.ok(sgd.logs.some((l) => l.msg === 'cri-pull' && l.image === esgzRef && l.keychain === 'kept'), 'stargzd kept the credentials of the pull')
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared' && l.layer === images.esgzLayer), 'the private eStargz layer was mounted lazily (remote-snapshot-prepared)')
  t.notOk(sgd.logs.some((l) => l.msg === 'remote-snapshot-fallback' && l.layer === images.esgzLayer), 'no fallback for it')

  const status = await cri.image('ImageStatus', { image: { image: esgzRef } })
  t.ok(((status.image as { repo_tags?: string[] } | null)?.repo_tags ?? []).includes(esgzRef), 'ImageStatus answers through the proxy')

  const logDir = join(dir, 'pod-logs')
  const sandbox = sandboxConfig('private-pod', logDir)
  const pod = await cri.runtime('RunPodSandbox', { config: sandbox })
  const podId = String(pod.pod_sandbox_id)
  const c = await cri.runtime('CreateContainer', {
    pod_sandbox_id: podId,
    config: { metadata: { name: 'app', attempt: 0 }, image: { image: esgzRef }, command: ['/bin/busybox'], args: ['sh', '-c', 'echo private and lazy; cat /etc/passwd | wc -l'], log_path: 'app.log' },
    sandbox_config: sandbox,
  })
  const id = String(c.container_id)
  await cri.runtime('StartContainer', { container_id: id })
  const st = await waitExited(cri, id)
  t.equal(st.exit_code, 0, 'the container from the private lazy image exited 0')
  t.match(await readFile(join(logDir, 'app.log'), 'utf8'), / stdout F private and lazy$/m, 'and logged its output')
  await cri.runtime('StopContainer', { container_id: id, timeout: 10 })
  await cri.runtime('RemoveContainer', { container_id: id })
  await cri.runtime('StopPodSandbox', { pod_sandbox_id: podId })
  await cri.runtime('RemovePodSandbox', { pod_sandbox_id: podId })
  await cri.image('RemoveImage', { image: { image: esgzRef } })

  const everything = [...sgd.raw, ...sgd.logs.map((l) => JSON.stringify(l))].join('\n')
  t.notOk(everything.includes(user.password), 'the password is nowhere in the daemon log')
  t.notOk(everything.includes(Buffer.from(`${user.username}:${user.password}`).toString('base64')), 'nor its base64 form')
})
