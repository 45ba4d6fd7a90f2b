/**
 * One root pino logger per process; components take children bound to {component, ...}.
 * Fixed `msg` keys for events tests and operators look for (e.g. "remote-snapshot-prepared").
 * Credentials never reach the log: anything under these keys is replaced by "[redacted]".
 */
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino'

export type { Logger }

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

const REDACT = [
  'password', 'secret', 'token', 'auth', 'authorization', 'identitytoken', 'credentials',
  '*.password', '*.secret', '*.token', '*.auth', '*.authorization', '*.Authorization', '*.identitytoken',
  '*.identityToken', '*.registrytoken', '*.access_token', '*.refresh_token', '*.credentials',
  'headers.authorization', '*.headers.authorization', 'req.headers.authorization', 'req.headers.cookie',
]

export function createRootLogger(opts: { level?: LevelWithSilent; destination?: DestinationStream; name?: string } = {}): Logger {
  const options = {
    name: opts.name ?? 'stargzd',
    level: opts.level ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
    base: { pid: process.pid },
  }
  return opts.destination ? pino(options, opts.destination) : pino(options)
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
