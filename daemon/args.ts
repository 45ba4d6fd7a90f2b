/** Command line of `stargzd`. */
import type { Overrides } from '../src/config/load.js'

export interface DaemonArgs {
  config: string | undefined
  overrides: Overrides
  help: boolean
  /**
   * --fuse-manager SOCKET: FUSE is served by a separate stargz-fused process listening on SOCKET
   * (`default`: <root>/fused.sock), which outlives this daemon (see README "Crash, restart, upgrade").
   */
  fuseManager: string | undefined
}

export const USAGE = `usage: stargzd [--config /etc/stargzd/config.toml] [--address SOCKET] [--root DIR]
               [--log-level trace|debug|info|warn|error|fatal] [--hosts-dir DIR]
               [--fuse-manager SOCKET|default]`

const FLAGS: Record<string, keyof Overrides | 'config' | 'fuseManager'> = {
  '--config': 'config',
  '--fuse-manager': 'fuseManager',
  '--address': 'address',
  '--root': 'root',
  '--log-level': 'log_level',
  '--hosts-dir': 'hosts_dir',
}

export function parseArgs(argv: readonly string[]): DaemonArgs {
  const out: DaemonArgs = { config: undefined, overrides: {}, help: false, fuseManager: undefined }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '-h' || arg === '--help') {
      out.help = true
      continue
    }
    const eq = arg.indexOf('=')
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    const name = FLAGS[flag]
    if (!name) throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`)
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`)
    if (name === 'config') out.config = value
    else if (name === 'fuseManager') out.fuseManager = value
    else out.overrides[name] = value
  }
  return out
}
