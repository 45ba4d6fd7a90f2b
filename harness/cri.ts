/**
 * What the CRI end-to-end tests share: a promise-based runtime.v1 client over our proto (a real
 * gRPC client, as kubelet would be), the images they run (a pause image built here from
 * fixtures/pause.c, an eStargz busybox converted by our writer, the same busybox as plain gzip),
 * and hosts.toml entries for plain-HTTP test registries.
 */
import * as grpc from '@grpc/grpc-js'
import { execFileSync } from 'node:child_process'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { criClientConstructor, IMAGE_SERVICE, RUNTIME_SERVICE } from '../src/cri/proto.js'
import { TOC_DIGEST_ANNOTATION } from '../src/estargz/types.js'
import { convertFile } from './convert.js'
import { REPO } from './cli.js'
import { sha256, skopeoPush, tarOf, writeOciLayout, type BuiltImage, type LayerBlob, type SkopeoOptions } from './image.js'

type Msg = Record<string, unknown>

export interface CriClient {
  runtime(method: string, req: Msg, timeoutMs?: number): Promise<Msg>
  image(method: string, req: Msg, timeoutMs?: number): Promise<Msg>
  close(): void
}

/** A runtime.v1 client; `imageSocket` defaults to the runtime socket (kubelet's default too). */
export function criClient(runtimeSocket: string, imageSocket = runtimeSocket): CriClient {
  const Runtime = criClientConstructor(RUNTIME_SERVICE)
  const Image = criClientConstructor(IMAGE_SERVICE)
  const rt = new Runtime(`unix:${runtimeSocket}`, grpc.credentials.createInsecure())
  const im = new Image(`unix:${imageSocket}`, grpc.credentials.createInsecure())
  const call = (c: grpc.Client, method: string, req: Msg, timeoutMs = 120_000): Promise<Msg> => new Promise((resolve, reject) => {
    const fn = (c as unknown as Record<string, (r: Msg, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Msg) => void) => void>)[method]
    if (!fn) { reject(new Error(`no CRI method ${method}`)); return }
    fn.call(c, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(new Error(`CRI ${method}: ${err.details || err.message} (code ${err.code})`)) : resolve(res)))
  })
  return {
    runtime: (m, r, ms) => call(rt, m, r, ms),
    image: (m, r, ms) => call(im, m, r, ms),
    close: () => { rt.close(); im.close() },
  }
}

/** An OCI image whose config has an Entrypoint (buildImage's has Cmd /bin/sh only). */
function imageOf(layers: LayerBlob[], entrypoint: string[]): BuiltImage {
  const platform = { os: 'linux', architecture: 'amd64' }
  const config = Buffer.from(JSON.stringify({
    ...platform,
    created: '2024-01-01T00:00:00Z',
    config: { Entrypoint: entrypoint, Env: ['PATH=/bin:/usr/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  }))
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: sha256(l.data), size: l.data.length, ...(l.annotations ? { annotations: l.annotations } : {}) })),
  }))
  return { manifest, manifestDigest: sha256(manifest), config, configDigest: sha256(config), layers, platform }
}

async function push(dir: string, name: string, img: BuiltImage, dest: string, opts: SkopeoOptions): Promise<void> {
  await writeOciLayout(join(dir, `${name}.oci`), name, [img])
  await skopeoPush(join(dir, `${name}.oci`), name, dest, opts)
}

/** Build fixtures/pause.c static and push a one-file image (/pause) to `dest`. */
export async function pushPauseImage(dir: string, dest: string, opts: SkopeoOptions = {}): Promise<void> {
  const bin = join(dir, 'pause')
  execFileSync('gcc', ['-static', '-Os', '-s', '-o', bin, join(REPO, 'test/cri/fixtures/pause.c')])
  const tar = tarOf([{ name: 'pause', data: await readFile(bin), mode: 0o755 }])
  await push(dir, 'pause', imageOf([{ data: gzipSync(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }], ['/pause']), dest, opts)
}

export interface BusyboxImages {
  /** Digest of the eStargz layer (the one that must go remote). */
  esgzLayer: string
  esgzSize: number
  plainLayer: string
}

/**
 * Push busybox twice: as eStargz with the TOC digest annotation (converted by our writer) to
 * `esgzDest`, and as plain gzip to `plainDest` (when given).
 */
export async function pushBusyboxImages(dir: string, esgzDest: string, plainDest: string | undefined, opts: SkopeoOptions & { extraFiles?: Record<string, Buffer> } = {}): Promise<BusyboxImages> {
  const baseTar = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const rootfsTar = join(dir, 'rootfs.tar')
  await copyFile(baseTar, rootfsTar)
  if (opts.extraFiles) {
    const extra = join(dir, 'extra')
    for (const [name, data] of Object.entries(opts.extraFiles)) {
      await mkdir(dirname(join(extra, name)), { recursive: true })
      await writeFile(join(extra, name), data)
    }
    execFileSync('tar', ['-rf', rootfsTar, '--owner=0', '--group=0', '-C', extra, ...Object.keys(opts.extraFiles)])
  }
  const esgzPath = join(dir, 'busybox.estargz')
  const conv = await convertFile(rootfsTar, esgzPath)
  const esgz = await readFile(esgzPath)
  const esgzLayer: LayerBlob = { data: esgz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }
  await push(dir, 'esgz', imageOf([esgzLayer], ['/bin/sh']), esgzDest, opts)
  const tar = await readFile(rootfsTar)
  const plain = gzipSync(tar)
  if (plainDest) await push(dir, 'plain', imageOf([{ data: plain, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }], ['/bin/sh']), plainDest, opts)
  return { esgzLayer: sha256(esgz), esgzSize: esgz.length, plainLayer: sha256(plain) }
}

/** `<hostsDir>/<host>/hosts.toml` sending pulls of `host` over plain HTTP (to `mirror` first, if given). */
export async function writeHostsToml(hostsDir: string, host: string, mirror?: string): Promise<void> {
  await mkdir(join(hostsDir, host), { recursive: true })
  const lines = [`server = "http://${host}"`, '']
  if (mirror) lines.push(`[host."http://${mirror}"]`, '  capabilities = ["pull", "resolve"]', '')
  lines.push(`[host."http://${host}"]`, '  capabilities = ["pull", "resolve"]', '')
  await writeFile(join(hostsDir, host, 'hosts.toml'), lines.join('\n'))
}

/** Host-network pod sandbox config (no CNI needed; no hostname: the pod shares the node's UTS namespace). */
export function sandboxConfig(name: string, logDir: string): Msg {
  return {
    metadata: { name, uid: `${name}-uid`, namespace: 'default', attempt: 0 },
    log_directory: logDir,
    linux: { security_context: { namespace_options: { network: 'NODE', pid: 'POD', ipc: 'POD' } } },
  }
}

/** Wait for a CRI container to exit; returns its status. */
export async function waitExited(cri: CriClient, id: string, timeoutMs = 60_000): Promise<Msg> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const r = await cri.runtime('ContainerStatus', { container_id: id })
    const st = r.status as Msg
    if (st.state === 'CONTAINER_EXITED') return st
    if (Date.now() > deadline) throw new Error(`container ${id} did not exit in time: ${JSON.stringify(st)}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}
