import { InvalidArgumentError } from '../errors.js'

export interface ParsedArgs {
  positionals: string[]
  flags: Map<string, string | true>
  /** Everything after a bare `--`. */
  rest: string[]
}

/**
 * Small flag parser: `--name value`, `--name=value`, and boolean flags listed in `booleans`.
 * Unknown flags are errors so typos do not silently change behaviour.
 */
export function parseArgs(argv: string[], spec: { values?: string[]; booleans?: string[] }): ParsedArgs {
  const values = new Set(spec.values ?? [])
  const booleans = new Set(spec.booleans ?? [])
  const out: ParsedArgs = { positionals: [], flags: new Map(), rest: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--') { out.rest = argv.slice(i + 1); break }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=')
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2)
      if (booleans.has(name)) {
        if (eq >= 0) throw new InvalidArgumentError(`flag --${name} takes no value`)
        out.flags.set(name, true)
      } else if (values.has(name)) {
        const v = eq >= 0 ? a.slice(eq + 1) : argv[++i]
        if (v === undefined) throw new InvalidArgumentError(`flag --${name} needs a value`)
        out.flags.set(name, v)
      } else {
        throw new InvalidArgumentError(`unknown flag --${name}`)
      }
    } else {
      out.positionals.push(a)
    }
  }
  return out
}

export function flagString(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name)
  return typeof v === 'string' ? v : undefined
}

export function flagBool(args: ParsedArgs, name: string): boolean {
  return args.flags.get(name) === true
}

export function flagInt(args: ParsedArgs, name: string, min = 1): number | undefined {
  const v = flagString(args, name)
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new InvalidArgumentError(`flag --${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`)
  }
  return Number(v)
}
