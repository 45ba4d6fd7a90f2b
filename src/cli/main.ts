#!/usr/bin/env node
/**
 * `stargz` command entry point. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * `run(argv): Promise<number>` (the exit code). Errors reach the user as one line on stderr.
 */
import { errorMessage, isStargzError } from '../errors.js'

type Command = { run(argv: string[]): Promise<number>; summary: string }

const commands: Record<string, () => Promise<Command>> = {
  'convert-layer': () => import('./commands/convert-layer.js'),
  toc: () => import('./commands/toc.js'),
  cat: () => import('./commands/cat.js'),
  verify: () => import('./commands/verify.js'),
  inspect: () => import('./commands/inspect.js'),
  mount: () => import('./commands/mount.js'),
  convert: () => import('./commands/convert.js'),
  optimize: () => import('./commands/optimize.js'),
  bench: () => import('./commands/bench.js'),
}

async function usage(): Promise<string> {
  const lines = ['usage: stargz COMMAND [ARGS...]', '', 'commands:']
  for (const [name, load] of Object.entries(commands)) {
    let summary = ''
    try { summary = (await load()).summary } catch { summary = '(unavailable)' }
    lines.push(`  ${name.padEnd(14)} ${summary}`)
  }
  return lines.join('\n')
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write((await usage()) + '\n')
    return name === undefined ? 2 : 0
  }
  const load = commands[name]
  if (!load) {
    process.stderr.write(`stargz: unknown command ${JSON.stringify(name)}\n${await usage()}\n`)
    return 2
  }
  const cmd = await load()
  return cmd.run(rest)
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (e: unknown) => {
    const prefix = isStargzError(e) ? `stargz: ${e.code}: ` : 'stargz: '
    process.stderr.write(prefix + errorMessage(e) + '\n')
    if (process.env.STARGZ_DEBUG) process.stderr.write(String((e as Error)?.stack) + '\n')
    process.exitCode = 1
  },
)
