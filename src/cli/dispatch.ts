/**
 * Running one command from its argv: parse against its CommandSpec, answer `--help`, and turn a
 * UsageError into exit status 2 with a pointer to `--help`. main.ts and the scripts that run a
 * single command from source (bench/startup.ts) share it, so they behave the same.
 */
import { formatUsage, parseCommand, UsageError, wantsHelp, type CommandSpec, type ParsedArgs } from './args.js'

export interface Command { spec: CommandSpec; run(args: ParsedArgs): Promise<number> }

/** Exit status 2: the command was called wrongly. */
export const EXIT_USAGE = 2

export async function runCommand(cmd: Command, argv: readonly string[]): Promise<number> {
  try {
    const args = parseCommand(argv, cmd.spec)
    if (wantsHelp(args)) { process.stdout.write(formatUsage(cmd.spec)); return 0 }
    return await cmd.run(args)
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    process.stderr.write(`${cmd.spec.name}: ${e.message}\nRun '${cmd.spec.name} --help' for usage.\n`)
    return EXIT_USAGE
  }
}
