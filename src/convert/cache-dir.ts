/**
 * Default place of the conversion cache: /var/cache/stargz/convert for root (FHS: data an
 * application can regenerate), else $XDG_CACHE_HOME/stargz/convert (~/.cache by default).
 */
import { homedir } from 'node:os'
import { join } from 'node:path'

export function defaultConvertCacheDir(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? -1): string {
  if (uid === 0) return '/var/cache/stargz/convert'
  const xdg = env.XDG_CACHE_HOME
  const base = xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache')
  return join(base, 'stargz', 'convert')
}
