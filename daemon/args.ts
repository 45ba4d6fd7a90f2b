/**
 * Command line of `stargzd`, parsed with `node:util` parseArgs. One table of flags drives both the
 * parser and the usage text, so every accepted flag is documented. Errors thrown here are usage
 * errors: stargzd.ts exits 2 on them.
 */
import { parseArgs as nodeParseArgs } from 'node:util'
import type { Overrides } from '../src/config/load.js'

export interface DaemonArgs {
  config: string | undefined
  overrides: Overrides
  help: boolean
  version: boolean
}

interface Flag { name: string; value?: string; short?: string; help: string; override?: keyof Overrides }

export const FLAGS: readonly Flag[] = [
  { name: 'config', value: 'FILE', help: 'config file (default /etc/stargzd/config.toml; a missing default is fine)' },
  { name: 'address', value: 'SOCKET', override: 'address', help: 'gRPC socket containerd connects to (config: address)' },
  { name: 'root', value: 'DIR', override: 'root', help: 'state directory (config: root)' },
  { name: 'log-level', value: 'LEVEL', override: 'log_level', help: 'trace|debug|info|warn|error|fatal (config: log_level)' },
  { name: 'hosts-dir', value: 'DIR', override: 'hosts_dir', help: 'containerd certs.d directory (config: hosts_dir)' },
  { name: 'version', short: 'v', help: 'print the version and exit' },
  { name: 'help', short: 'h', help: 'print this help and exit' },
]

function usageText(): string {
  const label = (f: Flag): string => `${f.short ? `-${f.short}, ` : ''}--${f.name}${f.value ? ` ${f.value}` : ''}`
  const width = Math.max(...FLAGS.map((f) => label(f).length))
  return ['usage: stargzd [flags]', '', 'containerd proxy snapshotter with lazy eStargz mounts', '', 'flags:',
    ...FLAGS.map((f) => `  ${label(f).padEnd(width)}  ${f.help}`)].join('\n')
}

export const USAGE = usageText()

export function parseArgs(argv: readonly string[]): DaemonArgs {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {}
  for (const f of FLAGS) options[f.name] = { type: f.value ? 'string' : 'boolean', ...(f.short ? { short: f.short } : {}) }
  // strict: false, so unknown flags and missing values come back as tokens and are worded here.
  const { tokens } = nodeParseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true })
  const out: DaemonArgs = { config: undefined, overrides: {}, help: false, version: false }
  for (const tok of tokens) {
    if (tok.kind === 'positional') throw new Error(`unexpected argument ${JSON.stringify(tok.value)}\n${USAGE}`)
    if (tok.kind === 'option-terminator') continue
    const f = FLAGS.find((x) => x.name === tok.name)
    if (!f) throw new Error(`unknown flag ${tok.rawName}\n${USAGE}`)
    if (!f.value) {
      if (tok.value !== undefined) throw new Error(`${tok.rawName} takes no value\n${USAGE}`)
      if (f.name === 'help') out.help = true
      else out.version = true
      continue
    }
    if (tok.value === undefined) throw new Error(`${tok.rawName} needs a value\n${USAGE}`)
    if (f.name === 'config') out.config = tok.value
    else if (f.override) out.overrides[f.override] = tok.value
  }
  return out
}
