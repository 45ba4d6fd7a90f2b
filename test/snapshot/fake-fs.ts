/** A FileSystem that "mounts" by writing a marker file, with switchable failures. */
import { writeFile, rm, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { FailedPreconditionError, FooterError, UnavailableError } from '../../src/errors.js'
import type { FileSystem, RemoteLayerInfo } from '../../src/snapshot/filesystem.js'

export class FakeFileSystem implements FileSystem {
  mounted = new Map<string, RemoteLayerInfo>()
  mountCalls: { mountpoint: string; layer: RemoteLayerInfo }[] = []
  checks: string[] = []
  unmounts: string[] = []
  failDigests = new Set<string>()
  unhealthy = new Set<string>()
  /** When set, mount waits for the abort signal (to test deadlines). */
  hang = false
  /** When set, mount waits for the abort signal and then lands anyway (a mount that is late). */
  landLate = false
  /** When set, every mount waits for it (to hold mounts in progress). */
  gate: Promise<void> | undefined
  /** Unmount throws (the mount stays). */
  failUnmount = false

  async mount(mountpoint: string, layer: RemoteLayerInfo, signal?: AbortSignal): Promise<void> {
    this.mountCalls.push({ mountpoint, layer })
    signal?.throwIfAborted()
    if (this.mounted.has(mountpoint)) throw new FailedPreconditionError(`${mountpoint} is already mounted`)
    if (this.hang) {
      await new Promise<void>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason)))
    }
    if (this.gate) await this.gate
    if (this.landLate) {
      await new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve()))
    }
    if (this.failDigests.has(layer.layerDigest)) throw new FooterError(`layer ${layer.layerDigest} is not eStargz`)
    await writeFile(join(mountpoint, '.fake-mounted'), layer.layerDigest)
    this.mounted.set(mountpoint, layer)
  }

  async check(mountpoint: string): Promise<void> {
    this.checks.push(mountpoint)
    if (!this.mounted.has(mountpoint) || this.unhealthy.has(mountpoint)) throw new UnavailableError(`${mountpoint} is not healthy`)
  }

  async unmount(mountpoint: string): Promise<void> {
    this.unmounts.push(mountpoint)
    if (this.failUnmount && this.mounted.has(mountpoint)) throw new UnavailableError(`${mountpoint} is busy`)
    if (this.mounted.delete(mountpoint)) {
      await rm(join(mountpoint, '.fake-mounted'), { force: true })
      if ((await readdir(mountpoint).catch(() => [])).length > 0) throw new Error('left files behind')
    }
  }
}

/** A pino logger whose JSON lines land in `lines` (pino test/helper.js sink idea). */
export function captureLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    },
  })
  return { log: pino({ level: 'debug' }, sink), lines }
}
