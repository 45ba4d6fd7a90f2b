#!/usr/bin/env node
/**
 * `stargz` command entry point. Each subcommand lives in src/cli/commands/<name>.ts and exports
 * its CommandSpec (`spec`) and `run(args)`, which returns the exit code. main parses argv against
 * the spec, so `--help`/`-h`, unknown flags and their exit status (0 / 2) work the same for every
 * command. Errors reach the user as one line on stderr: usage errors exit 2, others 1.
 */
import { errorMessage, isStargzError } from '../errors.js'
import { COMMANDS } from './command-table.js'
import { EXIT_USAGE, runCommand, type Command } from './dispatch.js'
import { VERSION } from './version.js'

async function usage(): Promise<string> {
  const lines = ['usage: stargz COMMAND [ARGS...] [flags]', '       stargz --version', '', 'commands:']
  for (const [name, load] of Object.entries(COMMANDS)) {
    let summary = ''
    try { summary = (await load()).spec.summary } catch { summary = '(unavailable)' }
    lines.push(`  ${name.padEnd(15)} ${summary}`)
  }
  lines.push('', 'Run `stargz COMMAND --help` for the flags of a command.')
  return lines.join('\n')
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`stargz ${VERSION}\n`)
    return 0
  }
  // `stargz help CMD` is `stargz CMD --help`.
  if (name === 'help' && rest[0] !== undefined && COMMANDS[rest[0]]) return runCommand(await (COMMANDS[rest[0]] as () => Promise<Command>)(), ['--help'])
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const out = (await usage()) + '\n'
    if (name === undefined) { process.stderr.write(out); return EXIT_USAGE }
    process.stdout.write(out)
    return 0
  }
  const load = COMMANDS[name]
  if (!load) {
    process.stderr.write(`stargz: unknown command ${JSON.stringify(name)}\n${await usage()}\n`)
    return EXIT_USAGE
  }
  return runCommand(await load(), rest)
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
