/**
 * stargz mount REF MOUNTPOINT [flags] (the flags are in `spec` below and in --help)
 *
 * Foreground: mounts every layer lazily (FUSE) and overlayfs at MOUNTPOINT, logs `mounted`
 * (pino JSON on stderr), and on SIGINT/SIGTERM unmounts everything and exits 0.
 */
import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pino } from 'pino'
import { InvalidArgumentError } from '../../errors.js'
import { listMounts } from '../../fuse/unmount.js'
import { ImageMount } from '../../mount/image-mount.js'
import { openChunkCache } from '../../cache/chunk-cache.js'
import { LayerResolver } from '../../layer/resolver.js'
import { registryExternalToc, registryImageSource } from '../../mount/registry-source.js'
import { RegistryClient } from '../../registry/client.js'
import { indexFinder } from '../../gzindex/artifact.js'
import { flagBool, flagString, positionals, type CommandSpec, type ParsedArgs } from '../args.js'
import { REGISTRY_OPTIONS } from '../remote.js'

export const spec: CommandSpec = {
  name: 'stargz mount',
  summary: 'mount an image lazily (FUSE per layer + overlayfs) until SIGINT/SIGTERM',
  args: 'REF MOUNTPOINT',
  options: [
    { name: 'rw', type: 'boolean', help: 'writable upper layer (default read-only)' },
    { name: 'state-dir', type: 'string', value: 'DIR', help: 'where layer mounts and the upper dir live (default: a temp dir, removed at exit)' },
    { name: 'allow-full-fetch', type: 'boolean', help: 'download layers that are not eStargz instead of failing' },
    { name: 'no-prefetch', type: 'boolean', help: 'do not prefetch the prioritized files at mount' },
    { name: 'no-background-fetch', type: 'boolean', help: 'do not fetch the rest of each layer in the background' },
    { name: 'platform', type: 'string', value: 'OS/ARCH[/VARIANT]', help: 'platform to pick from an index (default: this machine)' },
    { name: 'cache-dir', type: 'string', value: 'DIR', help: 'chunk cache directory (default: memory only)' },
    { name: 'log-level', type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error (default info; pino JSON on stderr)' },
    ...REGISTRY_OPTIONS,
  ],
}

export async function run(args: ParsedArgs): Promise<number> {
  const [ref, mp] = positionals(args, spec, 2) as [string, string]
  const mountpoint = resolve(mp)
  const st = await stat(mountpoint).catch(() => undefined)
  if (!st?.isDirectory()) throw new InvalidArgumentError(`mountpoint ${mountpoint} is not an existing directory`)
  const logger = pino({ name: 'stargz', level: flagString(args, 'log-level') ?? 'info' }, pino.destination(2))

  const given = flagString(args, 'state-dir')
  const stateDir = given === undefined ? await mkdtemp(join(tmpdir(), 'stargz-mount-')) : resolve(given)
  // Private: the layers' files (some 0600 in the image) are reachable under the state dir.
  if (given !== undefined) { await mkdir(stateDir, { recursive: true, mode: 0o700 }); await chmod(stateDir, 0o700) }
  const hostsDir = flagString(args, 'hosts-dir')
  const platform = flagString(args, 'platform')
  const cacheDir = flagString(args, 'cache-dir')
  const client = new RegistryClient({
    plainHttp: flagBool(args, 'plain-http'),
    insecure: flagBool(args, 'insecure'),
    ...(hostsDir === undefined ? {} : { hostsDir }),
  })
  // The resolver owns the cache, the decode pool and every layer; closed after the unmounts.
  const resolver = new LayerResolver({
    cache: await openChunkCache(cacheDir === undefined ? undefined : resolve(cacheDir)),
    logger,
    noPrefetch: flagBool(args, 'no-prefetch'),
    noBackgroundFetch: flagBool(args, 'no-background-fetch'),
  })
  let image: ImageMount | undefined
  try {
    const abort = new AbortController()
    const onEarlySignal = (): void => abort.abort()
    process.once('SIGINT', onEarlySignal)
    process.once('SIGTERM', onEarlySignal)
    try {
      image = await ImageMount.mount(registryImageSource(client, platform), ref, mountpoint, {
        stateDir, rw: flagBool(args, 'rw'), allowFullFetch: flagBool(args, 'allow-full-fetch'), logger,
        resolver, externalToc: registryExternalToc(client), gzIndex: (r) => indexFinder(client, r), signal: abort.signal,
      })
    } finally {
      process.off('SIGINT', onEarlySignal)
      process.off('SIGTERM', onEarlySignal)
    }
    if (abort.signal.aborted) return 0
    const sig = await new Promise<NodeJS.Signals>((done) => {
      process.once('SIGINT', () => done('SIGINT'))
      process.once('SIGTERM', () => done('SIGTERM'))
    })
    logger.info({ signal: sig }, 'shutting-down')
    return 0
  } finally {
    let clean = true
    try { await image?.close() } catch (e) { clean = false; logger.error({ err: e }, 'unmount-failed') }
    await resolver.close().catch(() => undefined)
    await client.close().catch(() => undefined)
    // Never rm -r a state dir that still has something mounted in it.
    const busy = (await listMounts()).some((m) => m.mountpoint === stateDir || m.mountpoint.startsWith(stateDir + '/'))
    if (given === undefined && clean && !busy) await rm(stateDir, { recursive: true, force: true })
    logger.flush()
  }
}
