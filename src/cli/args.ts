/**
 * Command-line parsing for every `stargz` command, on top of `node:util` parseArgs.
 *
 * Each command declares a CommandSpec: its positionals synopsis and every option with a one-line
 * help. The same spec drives parsing, `--help` output and the table-driven test that checks
 * every accepted flag is documented, so the usage text cannot drift from the parser.
 *
 * Usage errors (unknown flag, missing value, wrong positionals, bad flag value) are UsageError;
 * main.ts turns them into exit status 2, as POSIX utilities and ctr/nerdctl do.
 */
import { parseArgs as nodeParseArgs } from 'node:util'
import { InvalidArgumentError } from '../errors.js'

/** A mistake in how the command was called, not in what it worked on: exit status 2. */
export class UsageError extends InvalidArgumentError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'UsageError'
  }
}

export interface OptionSpec {
  name: string
  type: 'string' | 'boolean'
  /** One-letter alias (`-h`). */
  short?: string
  /** May be given several times; the values are kept in order. */
  multiple?: boolean
  /** Placeholder for the value in the usage text (`--jobs N`). */
  value?: string
  help: string
  /** Another name for the option `aliasOf` (e.g. ctr-remote's `--estargz-chunk-size`). */
  aliasOf?: string
}

export interface CommandSpec {
  /** `stargz convert`, `stargzd`: what the usage line starts with. */
  name: string
  summary: string
  /** Positional synopsis after the name: `SRC DST`, `BLOB|REF PATH`. */
  args: string
  options: readonly OptionSpec[]
  /** Extra paragraphs after the options (examples, notes). */
  notes?: string
}

export interface ParsedArgs {
  positionals: string[]
  flags: Map<string, string | true | string[]>
  /** Everything after a bare `--`. */
  rest: string[]
}

/** The legacy shape: flag names that take a value, and boolean ones. */
export interface FlagSpec { values?: readonly string[]; booleans?: readonly string[]; multiples?: readonly string[]; shorts?: Readonly<Record<string, string>> }

export const HELP_OPTION: OptionSpec = { name: 'help', short: 'h', type: 'boolean', help: 'print this help and exit' }

/**
 * Parse argv against flag names. `--name value`, `--name=value`, `-h`, booleans, repeated
 * options, and `--` (everything after it is `rest`). Unknown flags are errors so typos do not
 * silently change behaviour.
 */
export function parseArgs(argv: readonly string[], spec: FlagSpec): ParsedArgs {
  type Opt = { type: 'string' | 'boolean'; multiple?: boolean; short?: string }
  const options: Record<string, Opt> = {}
  for (const v of spec.values ?? []) options[v] = { type: 'string' }
  for (const v of spec.multiples ?? []) options[v] = { type: 'string', multiple: true }
  for (const b of spec.booleans ?? []) options[b] = { type: 'boolean' }
  for (const [short, long] of Object.entries(spec.shorts ?? {})) {
    const o = options[long]
    if (o) o.short = short
  }
  // strict: false so we see unknown or malformed options as tokens and word the errors ourselves.
  const { tokens } = nodeParseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true })
  const out: ParsedArgs = { positionals: [], flags: new Map(), rest: [] }
  for (const tok of tokens) {
    if (tok.kind === 'option-terminator') { out.rest = argv.slice(tok.index + 1); break }
    if (tok.kind === 'positional') { out.positionals.push(tok.value); continue }
    const opt = options[tok.name]
    if (!opt) throw new UsageError(`unknown flag ${tok.rawName}`)
    if (opt.type === 'boolean') {
      if (tok.value !== undefined) throw new UsageError(`flag ${tok.rawName} takes no value`)
      out.flags.set(tok.name, true)
      continue
    }
    if (tok.value === undefined) throw new UsageError(`flag ${tok.rawName} needs a value`)
    if (opt.multiple) {
      const prev = out.flags.get(tok.name)
      out.flags.set(tok.name, Array.isArray(prev) ? [...prev, tok.value] : [tok.value])
    } else {
      out.flags.set(tok.name, tok.value)
    }
  }
  return out
}

/** The FlagSpec a CommandSpec accepts (with --help/-h). */
export function flagSpecOf(spec: CommandSpec): FlagSpec {
  const all = [HELP_OPTION, ...spec.options]
  const shorts: Record<string, string> = {}
  for (const o of all) if (o.short) shorts[o.short] = o.name
  return {
    values: all.filter((o) => o.type === 'string' && !o.multiple).map((o) => o.name),
    multiples: all.filter((o) => o.type === 'string' && o.multiple).map((o) => o.name),
    booleans: all.filter((o) => o.type === 'boolean').map((o) => o.name),
    shorts,
  }
}

/** Parse a command's argv; aliases are folded into the option they stand for. */
export function parseCommand(argv: readonly string[], spec: CommandSpec): ParsedArgs {
  const args = parseArgs(argv, flagSpecOf(spec))
  for (const o of spec.options) {
    if (o.aliasOf === undefined || !args.flags.has(o.name)) continue
    const v = args.flags.get(o.name) as string | true | string[]
    const prev = args.flags.get(o.aliasOf)
    if (prev !== undefined && JSON.stringify(prev) !== JSON.stringify(v)) {
      throw new UsageError(`--${o.name} is another name for --${o.aliasOf}; give only one of them`)
    }
    args.flags.delete(o.name)
    args.flags.set(o.aliasOf, v)
  }
  return args
}

export function wantsHelp(args: ParsedArgs): boolean {
  return args.flags.get('help') === true
}

/** The usage text: synopsis, summary, every option with its help, notes. */
export function formatUsage(spec: CommandSpec): string {
  const all = [...spec.options, HELP_OPTION]
  const label = (o: OptionSpec): string => `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`
  const width = Math.min(34, Math.max(...all.map((o) => label(o).length)))
  const lines = [`usage: ${spec.name}${spec.args ? ' ' + spec.args : ''}${spec.options.length > 0 ? ' [flags]' : ''}`, '', spec.summary, '', 'flags:']
  for (const o of all) {
    const l = label(o)
    const help = o.help + (o.multiple ? ' (repeatable)' : '') + (o.aliasOf ? ` (same as --${o.aliasOf})` : '')
    lines.push(l.length > width ? `  ${l}\n  ${''.padEnd(width)}  ${help}` : `  ${l.padEnd(width)}  ${help}`)
  }
  if (spec.notes) lines.push('', spec.notes)
  return lines.join('\n') + '\n'
}

export function flagString(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name)
  if (Array.isArray(v)) return v[v.length - 1]
  return typeof v === 'string' ? v : undefined
}

export function flagList(args: ParsedArgs, name: string): string[] {
  const v = args.flags.get(name)
  if (Array.isArray(v)) return [...v]
  return typeof v === 'string' ? [v] : []
}

export function flagBool(args: ParsedArgs, name: string): boolean {
  return args.flags.get(name) === true
}

export function flagInt(args: ParsedArgs, name: string, min = 1): number | undefined {
  const v = flagString(args, name)
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`flag --${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`)
  }
  return Number(v)
}

/** Exactly `names.length` positionals, or a UsageError naming what is expected. */
export function positionals(args: ParsedArgs, spec: CommandSpec, count: number): string[] {
  if (args.positionals.length !== count) {
    throw new UsageError(`expected ${spec.args || 'no arguments'}, got ${args.positionals.length === 0 ? 'none' : args.positionals.map((p) => JSON.stringify(p)).join(' ')}\nusage: ${spec.name} ${spec.args} [flags] (see --help)`)
  }
  return args.positionals
}
