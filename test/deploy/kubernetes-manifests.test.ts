/**
 * deploy/kubernetes/: parse every manifest (test/deploy/mini-yaml.ts) and check what a node needs
 * from them; then run the DaemonSet's init step and postStart hook for real, against a scratch
 * dir, with `nsenter` replaced by a recording shim: containerd is restarted only when its config
 * changed, and only after stargzd's socket is up.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse as parseToml } from 'smol-toml'
import { parseConfigText } from '../../src/config/load.js'
import { REPO } from '../../harness/cli.js'
import { parseYaml } from '../../harness/mini-yaml.js'

const execFileP = promisify(execFile)
t.setTimeout(120_000)

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any
const dir = join(REPO, 'deploy/kubernetes')
const load = async (f: string): Promise<Any> => parseYaml(await readFile(join(dir, f), 'utf8'))

t.test('mini-yaml: the subset it claims', async (t) => {
  t.same(parseYaml('a: 1\nb:\n  - x\n  - k: "v"\n    n: true\nc: |\n  line1\n  line2\nd: ["p", "q"] # comment\ne: \'it\'\'s\'\n'),
    { a: 1, b: ['x', { k: 'v', n: true }], c: 'line1\nline2\n', d: ['p', 'q'], e: "it's" })
  t.same(parseYaml('s:\n- |-\n  x\n  y\n'), { s: ['x\ny'] }, 'block scalar items, sequence at the key\'s indent')
  t.throws(() => parseYaml('a: &anchor 1\n'), /outside the YAML subset/)
  t.throws(() => parseYaml('a: 1\na: 2\n'), /duplicate key/)
})

t.test('manifests', async (t) => {
  const ds = await load('daemonset.yaml')
  const cm = await load('configmap.yaml')
  const kubelet = await load('kubelet-config.yaml')
  const kust = await load('kustomization.yaml')
  const allText = (await Promise.all(['daemonset.yaml', 'configmap.yaml', 'kubelet-config.yaml'].map((f) => readFile(join(dir, f), 'utf8')))).join('\n')

  t.equal(ds.kind, 'DaemonSet')
  t.equal(ds.apiVersion, 'apps/v1')
  const pod = ds.spec.template.spec
  t.same(ds.spec.selector.matchLabels, ds.spec.template.metadata.labels, 'selector matches the pod labels')
  t.equal(pod.hostPID, true, 'hostPID (the init step reaches the host\'s systemd)')
  t.equal(pod.priorityClassName, 'system-node-critical')
  t.ok(pod.tolerations.some((x: Any) => x.operator === 'Exists'), 'runs on every node, tainted or not')
  const main = pod.containers.find((c: Any) => c.name === 'stargzd')
  t.equal(main?.securityContext?.privileged, true, 'stargzd is privileged')
  const volumes = new Map<string, Any>(pod.volumes.map((v: Any) => [v.name, v]))
  const mountOf = (c: Any, path: string): Any => c.volumeMounts.find((m: Any) => m.mountPath === path)
  const hostPathOf = (c: Any, path: string): string | undefined => volumes.get(mountOf(c, path)?.name)?.hostPath?.path
  t.equal(hostPathOf(main, '/dev/fuse'), '/dev/fuse', '/dev/fuse from the host')
  t.equal(volumes.get(mountOf(main, '/dev/fuse').name).hostPath.type, 'CharDevice')
  t.equal(hostPathOf(main, '/var/lib/stargzd'), '/var/lib/stargzd', 'the snapshotter root is the host\'s')
  t.equal(mountOf(main, '/var/lib/stargzd').mountPropagation, 'Bidirectional', 'FUSE mounts propagate to the host (containerd sees them)')
  t.equal(hostPathOf(main, '/run/stargzd'), '/run/stargzd', 'sockets on the host')
  t.equal(hostPathOf(main, '/run/containerd'), '/run/containerd', 'containerd\'s CRI socket reachable (the image service proxy\'s backend)')
  t.equal(volumes.get(mountOf(main, '/etc/stargzd').name).configMap.name, cm.metadata.name, 'config from the ConfigMap')
  for (const c of [...pod.initContainers, ...pod.containers]) {
    for (const m of c.volumeMounts) t.ok(volumes.has(m.name), `${c.name}: volume ${m.name} is defined`)
    t.equal(c.image, main.image, `${c.name} uses the stargzd image`)
  }

  const init = pod.initContainers.find((c: Any) => c.name === 'containerd-config')
  t.ok(init, 'an init step installs the containerd snippet')
  t.equal(hostPathOf(init, '/host/etc/containerd'), '/etc/containerd', 'on the host\'s /etc/containerd')
  const initScript: string = init.command[init.command.length - 1]
  t.match(initScript, /merge-containerd-config\.js/, 'with the idempotent merge')
  t.match(initScript, /if \[ "\$status" = changed \]/, 'and marks a restart only when the file changed')
  t.notMatch(allText, /systemctl (stop|disable|mask|kill)\b/, 'nothing stops or disables a unit')

  // One config for everyone: the ConfigMap's config.toml is valid, and the sockets agree.
  const cfg = parseConfigText(cm.data['config.toml'], 'configmap.yaml')
  t.equal(cfg.cri_keychain.enable_keychain, true, 'the CRI keychain is on')
  t.match(initScript, new RegExp(`--address ${cfg.address}\\b`), 'the snippet points containerd at the configured socket')
  t.match(initScript, new RegExp(`--root ${cfg.root}\\b`), 'and exports the configured root')
  t.equal(kubelet.kind, 'KubeletConfiguration')
  t.equal(kubelet.imageServiceEndpoint, `unix://${cfg.cri_keychain.proxy_path}`, 'kubelet pulls through the proxy')
  t.equal(kubelet.containerRuntimeEndpoint, `unix://${cfg.cri_keychain.image_service_path}`, 'and runs through containerd, which the proxy forwards to')
  t.match(await readFile(join(dir, 'kubelet-config.yaml'), 'utf8'), /--image-service-endpoint=unix:\/\/\/run\/stargzd\/cri-image\.sock/, 'the flag form is documented too')
  for (const r of kust.resources) t.ok(existsSync(join(dir, r)), `kustomization resource ${r} exists`)
  t.ok(existsSync(join(REPO, 'src/install/merge-containerd-config.ts')), 'the merge tool the init step runs exists (dist/src/install/…)')
  const dockerfile = await readFile(join(REPO, 'deploy/Dockerfile'), 'utf8')
  t.match(dockerfile, /npm ci --omit=dev/, 'the image has runtime dependencies only')

  // Run the init step and the postStart hook on a scratch "host".
  const T = await mkdtemp(join(tmpdir(), 'sgd-ds-'))
  t.teardown(() => rm(T, { recursive: true, force: true }))
  const shims = join(T, 'shims')
  await mkdir(shims)
  await mkdir(join(T, 'etc/containerd'), { recursive: true })
  await mkdir(join(T, 'run'), { recursive: true })
  const calls = join(T, 'nsenter.log')
  await writeFile(join(shims, 'nsenter'), `#!/bin/sh\necho "nsenter $*" >> ${JSON.stringify(calls)}\n`)
  await chmod(join(shims, 'nsenter'), 0o755)
  await writeFile(join(T, 'etc/containerd/config.toml'), 'version = 2\n')
  const local = (s: string): string => s
    .replace(/node \/opt\/stargzd\/dist\/src\/install\/merge-containerd-config\.js/g, `node --import tsx ${join(REPO, 'src/install/merge-containerd-config.ts')}`)
    .replace(/\/host\/etc\/containerd/g, join(T, 'etc/containerd'))
    .replace(/\/run\/stargzd/g, join(T, 'run'))
  const hook: string = main.lifecycle.postStart.exec.command[main.lifecycle.postStart.exec.command.length - 1]
  const env = { ...process.env, PATH: `${shims}:${process.env.PATH ?? ''}` }
  const sh = (script: string): Promise<{ stdout: string }> => execFileP('/bin/sh', ['-c', local(script)], { env, cwd: REPO })
  // stargzd "serves" its socket.
  const server = createServer()
  await new Promise<void>((r) => server.listen(join(T, 'run/stargzd.sock'), r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))

  t.match((await sh(initScript)).stdout, /containerd config: changed/, 'init, first start: config changed')
  t.ok(existsSync(join(T, 'run/restart-containerd')), 'restart marked')
  const merged = parseToml(await readFile(join(T, 'etc/containerd/config.toml'), 'utf8')) as Any
  t.equal(merged.proxy_plugins.stargz.exports.root, '/var/lib/stargzd/', 'snippet installed with exports.root')
  await sh(hook)
  t.match(await readFile(calls, 'utf8'), /^nsenter --target 1 .* systemd-run --on-active=5 .* systemctl try-restart containerd\.service$/m, 'postStart: containerd restarted (deferred, try-restart) once stargzd serves')
  t.notOk(existsSync(join(T, 'run/restart-containerd')), 'marker consumed')
  await rm(calls)
  t.match((await sh(initScript)).stdout, /containerd config: unchanged/, 'init, pod restarted: config unchanged')
  await sh(hook)
  t.notOk(existsSync(calls), 'so containerd is not restarted')
})
