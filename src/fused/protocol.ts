/**
 * The wire between stargzd (control: gRPC, metadata) and stargz-fused (owns the FUSE mounts and
 * serves their reads): newline-delimited JSON over a unix socket. One request per line, answered
 * by one response line with the same `id`; responses may come out of order (mounts are slow).
 * JSON lines rather than gRPC: five operations, no streaming, and both ends are ours — a tiny
 * framing that `socat` can speak is easier to debug at 3 a.m. than a second proto.
 */
import {
  AlreadyExistsError, AuthError, ChunkDigestError, ConfigError, FailedPreconditionError, FetchError, FooterError,
  InvalidArgumentError, LimitError, ManifestError, NotFoundError, RegistryError, StargzError, TarError,
  TimeoutError, TocDigestError, TocError, UnavailableError, type ErrorCode,
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

/**
 * Back to a typed error on the control side, so gRPC status translation stays as it was: the
 * code picks the class (one per code), the message is the serving side's own words.
 */
export function fromWireError(w: WireError): StargzError {
  const m = w.message
  const make: Record<ErrorCode, () => StargzError> = {
    ERR_NOT_FOUND: () => new NotFoundError(m),
    ERR_ALREADY_EXISTS: () => new AlreadyExistsError(m),
    ERR_FAILED_PRECONDITION: () => new FailedPreconditionError(m),
    ERR_INVALID_ARGUMENT: () => new InvalidArgumentError(m),
    ERR_UNAVAILABLE: () => new UnavailableError(m),
    ERR_FOOTER_INVALID: () => new FooterError(m),
    ERR_TOC_INVALID: () => new TocError('remote', m),
    ERR_TOC_DIGEST_MISMATCH: () => new TocDigestError('', ''),
    ERR_CHUNK_DIGEST_MISMATCH: () => new ChunkDigestError('', 0, '', ''),
    ERR_TAR_INVALID: () => new TarError(m),
    ERR_LIMIT_EXCEEDED: () => new LimitError(m),
    ERR_REGISTRY: () => new RegistryError(m),
    ERR_AUTH: () => new AuthError(m),
    ERR_FETCH: () => new FetchError(m),
    ERR_TIMEOUT: () => new TimeoutError(m),
    ERR_MANIFEST_INVALID: () => new ManifestError(m),
    ERR_CONFIG_INVALID: () => new ConfigError('', m),
  }
  const e = (make[w.code as ErrorCode] ?? (() => new UnavailableError(m)))()
  e.message = m
  return e
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
