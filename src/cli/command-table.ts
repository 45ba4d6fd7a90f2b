/** Every `stargz` command, loaded on demand (a command's dependencies load only when it runs). */
import type { Command } from './dispatch.js'

export const COMMANDS: Record<string, () => Promise<Command>> = {
  'convert-layer': () => import('./commands/convert-layer.js'),
  toc: () => import('./commands/toc.js'),
  'get-toc-digest': () => import('./commands/get-toc-digest.js'),
  cat: () => import('./commands/cat.js'),
  verify: () => import('./commands/verify.js'),
  inspect: () => import('./commands/inspect.js'),
  mount: () => import('./commands/mount.js'),
  rpull: () => import('./commands/rpull.js'),
  convert: () => import('./commands/convert.js'),
  optimize: () => import('./commands/optimize.js'),
  bench: () => import('./commands/bench.js'),
  index: () => import('./commands/index.js'),
}
