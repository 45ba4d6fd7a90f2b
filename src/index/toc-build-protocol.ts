/**
 * Messages between TocBuildPool (main thread, toc-build-pool.ts) and toc-build-worker.ts, and
 * how an error crosses: by code and fields, rebuilt as the same class on the main side, so a
 * caller cannot tell a worker build from an inline one (test/index/toc-build-pool.test.ts).
 *
 *   main → worker  build     { member (transferred), footer, limits, tocDigest?, maxIndexBytes?, what }
 *   worker → main  reserve   { jsonBytes }           the tar header is read; the inflate waits
 *   main → worker  reserved  { ok }                  the budget said yes (ok) or threw (stop)
 *   worker → main  done      { index (transferred, `length` bytes at 0), tocDigest, jsonBytes }
 *   worker → main  failed    { error }
 */
import { FailedPreconditionError, InvalidArgumentError, LimitError, StargzError, TarError, TocDigestError, TocError } from '../errors.js'
import type { Footer, TocLimits } from '../estargz/types.js'

export type TocBuildMessage =
  | { id: number; op: 'build'; member: Uint8Array; footer: Footer; limits: TocLimits; tocDigest?: string; maxIndexBytes?: number; what: string }
  | { id: number; op: 'reserved'; ok: boolean }

export type TocBuildReply =
  | { id: number; op: 'reserve'; jsonBytes: number }
  | { id: number; op: 'done'; index: ArrayBuffer; length: number; tocDigest: string; jsonBytes: number }
  | { id: number; op: 'failed'; error: WireError }

export interface WireError {
  name: string
  message: string
  code?: string
  rule?: string
  entry?: string
  expected?: string
  actual?: string
  cause?: { name: string; message: string; code?: string }
}

function causeOf(e: Error): WireError['cause'] {
  const c = e.cause
  if (!(c instanceof Error)) return undefined
  const out: NonNullable<WireError['cause']> = { name: c.name, message: c.message }
  const code = (c as { code?: unknown }).code
  if (typeof code === 'string') out.code = code
  return out
}

export function toWire(e: unknown): WireError {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) }
  const w: WireError = { name: e.name, message: e.message }
  if (e instanceof StargzError) w.code = e.code
  if (e instanceof TocError) {
    w.rule = e.rule
    if (e.entry !== undefined) w.entry = e.entry
  }
  if (e instanceof TocDigestError) {
    w.expected = e.expected
    w.actual = e.actual
  }
  const cause = causeOf(e)
  if (cause !== undefined) w.cause = cause
  return w
}

/** The same class, message, fields and (as a plain Error with its code) cause. */
export function fromWire(w: WireError): Error {
  const options = w.cause === undefined ? undefined : { cause: Object.assign(new Error(w.cause.message), { name: w.cause.name }, w.cause.code === undefined ? {} : { code: w.cause.code }) }
  let e: Error
  switch (w.code) {
    case 'ERR_TOC_DIGEST_MISMATCH': return new TocDigestError(w.expected ?? '', w.actual ?? '')
    case 'ERR_TOC_INVALID': e = new TocError(w.rule ?? '', '', w.entry, options); break
    case 'ERR_LIMIT_EXCEEDED': e = new LimitError(w.message, options); break
    case 'ERR_TAR_INVALID': e = new TarError(w.message, options); break
    case 'ERR_INVALID_ARGUMENT': e = new InvalidArgumentError(w.message, options); break
    case 'ERR_FAILED_PRECONDITION': e = new FailedPreconditionError(w.message, options); break
    default:
      e = new Error(w.message, options)
      e.name = w.name
  }
  // The constructors compose their message; the original's is the one to keep.
  e.message = w.message
  return e
}
