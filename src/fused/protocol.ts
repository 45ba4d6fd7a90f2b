/**
 * The wire between stargzd (control: gRPC, metadata) and stargz-fused (owns the FUSE mounts and
 * serves their reads): newline-delimited JSON over a unix socket. One request per line, answered
 * by one response line with the same `id`; responses may come out of order (mounts are slow).
 * JSON lines rather than gRPC: five operations, no streaming, and both ends are ours — a tiny
 * framing that `socat` can speak is easier to debug at 3 a.m. than a second proto.
 */
import {
  AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError, StargzError,
  UnavailableError, type ErrorCode,
} from '../errors.js'
import type { RemoteLayerInfo } from '../snapshot/filesystem.js'

export const PROTOCOL_VERSION = 1

export type Request =
  | { id: number; op: 'hello' }
  | { id: number; op: 'mount'; mountpoint: string; layer: RemoteLayerInfo }
  | { id: number; op: 'cancel'; target: number }
  | { id: number; op: 'check'; mountpoint: string; layer: RemoteLayerInfo }
  | { id: number; op: 'unmount'; mountpoint: string }
  | { id: number; op: 'state' }

export interface MountState { mountpoint: string; layerDigest: string; imageRef: string }

export interface HelloResult { version: number; pid: number; startedAt: string }
export interface MountResult { attached: boolean }
export interface StateResult { mounts: MountState[] }

export interface WireError { code: string; message: string }
export type Response = { id: number; ok: true; result?: unknown } | { id: number; ok: false; error: WireError }

export function toWireError(e: unknown): WireError {
  if (e instanceof StargzError) return { code: e.code, message: e.message }
  return { code: 'ERR_UNAVAILABLE', message: e instanceof Error ? e.message : String(e) }
}

/** Back to a typed error on the control side, so gRPC status translation stays as it was. */
export function fromWireError(w: WireError): StargzError {
  switch (w.code) {
    case 'ERR_NOT_FOUND': return new NotFoundError(w.message)
    case 'ERR_ALREADY_EXISTS': return new AlreadyExistsError(w.message)
    case 'ERR_FAILED_PRECONDITION': return new FailedPreconditionError(w.message)
    case 'ERR_INVALID_ARGUMENT': return new InvalidArgumentError(w.message)
    case 'ERR_UNAVAILABLE': return new UnavailableError(w.message)
    default: return new StargzError(w.code as ErrorCode, w.message)
  }
}

/** Splits a byte stream into lines; a line longer than `maxBytes` is a protocol error. */
export class LineSplitter {
  private buf = ''
  constructor(private readonly onLine: (line: string) => void, private readonly maxBytes = 1 << 20) {}
  push(chunk: string): void {
    this.buf += chunk
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl)
      this.buf = this.buf.slice(nl + 1)
      if (line.trim() !== '') this.onLine(line)
    }
    if (this.buf.length > this.maxBytes) throw new InvalidArgumentError(`fused protocol line longer than ${this.maxBytes} bytes`)
  }
}
