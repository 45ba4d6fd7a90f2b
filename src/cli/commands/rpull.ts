/**
 * `stargz rpull REF`: pull an image into containerd lazily, as `ctr-remote image rpull` does —
 * eStargz layers are mounted by stargzd instead of downloaded (see src/cli/rpull.ts).
 */
import { hostPlatform, parsePlatform } from '../../registry/manifest.js'
import { parseReference } from '../../registry/reference.js'
import { flagList, flagString, positionals, UsageError, type CommandSpec, type ParsedArgs } from '../args.js'
import { ContainerdClient } from '../containerd/client.js'
import { clientFromArgs, REGISTRY_OPTIONS } from '../remote.js'
import { rpull } from '../rpull.js'

export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock'

export const spec: CommandSpec = {
  name: 'stargz rpull',
  summary: 'pull an image into containerd lazily through the stargz snapshotter (ctr-remote image rpull)',
  args: 'REF',
  options: [
    { name: 'address', short: 'a', type: 'string', value: 'SOCKET', help: `containerd socket (default $CONTAINERD_ADDRESS or ${DEFAULT_CONTAINERD_ADDRESS})` },
    { name: 'namespace', short: 'n', type: 'string', value: 'NS', help: 'containerd namespace (default $CONTAINERD_NAMESPACE or "default")' },
    { name: 'snapshotter', type: 'string', value: 'NAME', help: 'containerd snapshotter name of stargzd (default "stargz")' },
    { name: 'platform', type: 'string', value: 'OS/ARCH[/VARIANT]', help: 'platform to pick from an index (default: this machine)' },
    { name: 'label', type: 'string', multiple: true, value: 'K=V', help: 'label for the image record' },
    ...REGISTRY_OPTIONS,
    { name: 'skip-verify', short: 'k', type: 'boolean', aliasOf: 'insecure', help: 'ctr-remote name' },
  ],
  notes: 'After it, `ctr run --snapshotter stargz REF ID` uses the lazily mounted layers.',
}

function parseLabels(list: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const kv of list) {
    const eq = kv.indexOf('=')
    if (eq <= 0) throw new UsageError(`--label ${JSON.stringify(kv)}: expected KEY=VALUE`)
    out[kv.slice(0, eq)] = kv.slice(eq + 1)
  }
  return out
}

export async function run(args: ParsedArgs): Promise<number> {
  const [refArg] = positionals(args, spec, 1) as [string]
  const ref = parseReference(refArg)
  const platformFlag = flagString(args, 'platform')
  let platform
  try { platform = platformFlag === undefined ? hostPlatform() : parsePlatform(platformFlag) } catch (e) {
    throw new UsageError(`--platform: ${(e as Error).message}`, { cause: e })
  }
  const labels = parseLabels(flagList(args, 'label'))
  const address = flagString(args, 'address') ?? process.env.CONTAINERD_ADDRESS ?? DEFAULT_CONTAINERD_ADDRESS
  const namespace = flagString(args, 'namespace') ?? process.env.CONTAINERD_NAMESPACE ?? 'default'
  const registry = clientFromArgs(args)
  const ctrd = new ContainerdClient(address, namespace)
  try {
    const r = await rpull(registry, ctrd, ref, {
      snapshotter: flagString(args, 'snapshotter') ?? 'stargz',
      platform,
      labels,
      log: (m) => process.stderr.write(`stargz: ${m}\n`),
    })
    for (const l of r.layers) process.stderr.write(`${l.digest}: ${l.how === 'remote' ? 'lazy (remote snapshot)' : l.how === 'existing' ? 'already present' : 'downloaded and unpacked'}\n`)
    process.stdout.write(`${r.name} ${r.target.digest}\n`)
    return 0
  } finally {
    ctrd.close()
    await registry.close()
  }
}
