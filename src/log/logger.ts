/**
 * One root pino logger per process; components take children bound to {component, ...}.
 * Fixed `msg` keys for events tests and operators look for (e.g. "remote-snapshot-prepared").
 * Credentials never reach the log: anything under these keys is replaced by "[redacted]".
 *
 * Formats (config `log_format`):
 *  - "pino" (default): pino's JSON, numeric levels and epoch-ms `time`;
 *  - "json": containerd's `--log-format json` (logrus JSONFormatter): level names ("warning",
 *    not "warn"), RFC 3339 `time` with nanoseconds, `msg`;
 *  - "text": containerd's default text (logrus TextFormatter): `time="…" level=info msg="…" k=v`.
 * Log shippers set up for containerd and the reference snapshotter parse the last two as they are.
 */
import { pino, type Logger, type DestinationStream, type LevelWithSilent, type LoggerOptions } from 'pino'

export type { Logger }

export type LogFormat = 'pino' | 'json' | 'text'

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

const REDACT = [
  'password', 'secret', 'token', 'auth', 'authorization', 'identitytoken', 'credentials',
  '*.password', '*.secret', '*.token', '*.auth', '*.authorization', '*.Authorization', '*.identitytoken',
  '*.identityToken', '*.registrytoken', '*.access_token', '*.refresh_token', '*.credentials',
  'headers.authorization', '*.headers.authorization', 'req.headers.authorization', 'req.headers.cookie',
]

/** logrus's names: its Warn level prints as "warning". */
function logrusLevel(label: string): string {
  return label === 'warn' ? 'warning' : label
}

/** RFC 3339 in UTC with nine fractional digits, as containerd's RFC3339NanoFixed. */
export function rfc3339Nano(d: Date = new Date()): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z')
}

/** logrus quotes a value unless it is made only of these characters. */
const BARE = /^[A-Za-z0-9\-._/@^+]+$/

function logfmtValue(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
  return BARE.test(s) ? s : JSON.stringify(s)
}

/** One JSON line from pino (json format) → one logrus text line. */
export function toLogrusText(jsonLine: string): string {
  let rec: Record<string, unknown>
  try {
    rec = JSON.parse(jsonLine) as Record<string, unknown>
  } catch {
    return jsonLine.endsWith('\n') ? jsonLine : jsonLine + '\n'
  }
  const { time, level, msg, ...rest } = rec
  const parts = [`time=${logfmtValue(time ?? rfc3339Nano())}`, `level=${logfmtValue(level ?? 'info')}`, `msg=${logfmtValue(msg ?? '')}`]
  for (const k of Object.keys(rest).sort()) parts.push(`${k}=${logfmtValue(rest[k])}`)
  return parts.join(' ') + '\n'
}

/** A destination that rewrites each JSON line as logrus text before writing it to `out`. */
function textDestination(out: DestinationStream): DestinationStream {
  return { write: (line: string) => out.write(toLogrusText(line)) }
}

export function createRootLogger(opts: { level?: LevelWithSilent; format?: LogFormat; destination?: DestinationStream; name?: string } = {}): Logger {
  const format = opts.format ?? 'pino'
  const common: LoggerOptions = {
    level: opts.level ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
  }
  const options: LoggerOptions = format === 'pino'
    ? { ...common, name: opts.name ?? 'stargzd', base: { pid: process.pid } }
    : {
        ...common,
        base: undefined,
        formatters: { level: (label) => ({ level: logrusLevel(label) }) },
        timestamp: () => `,"time":"${rfc3339Nano()}"`,
      }
  if (format === 'text') return pino(options, textDestination(opts.destination ?? pino.destination(1)))
  return opts.destination ? pino(options, opts.destination) : pino(options)
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
