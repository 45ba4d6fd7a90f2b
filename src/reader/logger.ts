/**
 * The slice of pino's API the read path uses, so a pino logger (or a test sink) can be passed
 * in without this module importing pino.
 */
export interface Logger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
  child?(bindings: Record<string, unknown>): Logger
}

const noop = (): void => undefined
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

/** A child logger; loggers without `child` get the bindings merged into every call. */
export function childLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  if (parent.child) return parent.child(bindings)
  const wrap = (fn: (obj: object, msg?: string) => void) => (obj: object, msg?: string): void => fn.call(parent, { ...bindings, ...obj }, msg)
  return { debug: wrap(parent.debug), info: wrap(parent.info), warn: wrap(parent.warn), error: wrap(parent.error), child: (b) => childLogger(parent, { ...bindings, ...b }) }
}
