/**
 * A small client for the containerd services `stargz rpull` needs: content (Info, Write),
 * images, leases, snapshots and diff, over containerd's unix socket. Every call carries the
 * namespace, and the lease once one is set, as gRPC metadata (`containerd-namespace`,
 * `containerd-lease`), which is how containerd's own Go client scopes calls.
 *
 * Protos: proto/containerd/services/{content,images,leases,diff,snapshots}/v1, subsets with the
 * field numbers of containerd's published API.
 */
import { once } from 'node:events'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { AlreadyExistsError, NotFoundError, StargzError, UnavailableError } from '../../errors.js'
import { protoDir } from '../../grpc/proto.js'

const SERVICES = {
  content: ['containerd/services/content/v1/content.proto', 'containerd.services.content.v1.Content'],
  images: ['containerd/services/images/v1/images.proto', 'containerd.services.images.v1.Images'],
  leases: ['containerd/services/leases/v1/leases.proto', 'containerd.services.leases.v1.Leases'],
  diff: ['containerd/services/diff/v1/diff.proto', 'containerd.services.diff.v1.Diff'],
  snapshots: ['containerd/services/snapshots/v1/snapshots.proto', 'containerd.services.snapshots.v1.Snapshots'],
} as const

type ServiceName = keyof typeof SERVICES

export interface Descriptor { media_type: string; digest: string; size: number; annotations?: Record<string, string> }
export interface Mount { type: string; source: string; target?: string; options: string[] }

let ctors: Record<ServiceName, grpc.ServiceClientConstructor> | undefined

function constructors(): Record<ServiceName, grpc.ServiceClientConstructor> {
  if (ctors) return ctors
  const out: Partial<Record<ServiceName, grpc.ServiceClientConstructor>> = {}
  for (const [name, [file, service]] of Object.entries(SERVICES) as Array<[ServiceName, readonly [string, string]]>) {
    const def = protoLoader.loadSync(file, { includeDirs: [protoDir()], keepCase: true, longs: Number, enums: String, defaults: true })
    const svc = def[service]
    if (!svc) throw new Error(`${service} missing from ${file}`)
    out[name] = grpc.makeGenericClientConstructor(svc as grpc.ServiceDefinition<grpc.UntypedServiceImplementation>, name)
  }
  ctors = out as Record<ServiceName, grpc.ServiceClientConstructor>
  return ctors
}

/** A containerd gRPC error as one of our typed errors, naming the call. */
function translate(e: unknown, what: string): Error {
  const err = e as grpc.ServiceError
  const msg = `containerd ${what}: ${err.details || err.message}`
  switch (err.code) {
    case grpc.status.ALREADY_EXISTS: return new AlreadyExistsError(msg, { cause: e })
    case grpc.status.NOT_FOUND: return new NotFoundError(msg, { cause: e })
    case grpc.status.UNAVAILABLE: return new UnavailableError(msg, { cause: e })
    default: return new StargzError('ERR_FAILED_PRECONDITION', msg, { cause: e })
  }
}

export class ContainerdClient {
  private readonly clients = new Map<ServiceName, grpc.Client>()
  private lease: string | undefined
  private closed = false

  constructor(readonly address: string, readonly namespace: string) {}

  private client(name: ServiceName): grpc.Client {
    let c = this.clients.get(name)
    if (!c) {
      const Ctor = constructors()[name]
      c = new Ctor(`unix://${this.address}`, grpc.credentials.createInsecure())
      this.clients.set(name, c)
    }
    return c
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata()
    md.set('containerd-namespace', this.namespace)
    if (this.lease !== undefined) md.set('containerd-lease', this.lease)
    return md
  }

  /** One unary call: `service.method(request)`. */
  call<T>(service: ServiceName, method: string, request: object): Promise<T> {
    const c = this.client(service) as unknown as Record<string, (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: T) => void) => void>
    const fn = c[method]
    if (!fn) throw new Error(`no method ${service}.${method}`)
    return new Promise<T>((resolve, reject) => {
      fn.call(c, request, this.metadata(), { deadline: Date.now() + 10 * 60_000 }, (e, r) => (e ? reject(translate(e, `${service}.${method}`)) : resolve(r)))
    })
  }

  /** Calls after this carry the lease (containerd keeps what they create until the lease goes). */
  useLease(id: string | undefined): void {
    this.lease = id
  }

  /** Is the blob in the content store? */
  async hasContent(digest: string): Promise<boolean> {
    try {
      await this.call('content', 'Info', { digest })
      return true
    } catch (e) {
      if (e instanceof NotFoundError) return false
      throw e
    }
  }

  /** Set these labels on a blob in the content store, leaving its other labels alone. */
  async labelContent(digest: string, labels: Record<string, string>): Promise<void> {
    const keys = Object.keys(labels)
    if (keys.length === 0) return
    await this.call('content', 'Update', { info: { digest, labels }, update_mask: { paths: keys.map((k) => `labels.${k}`) } })
  }

  /**
   * Write one blob: the pieces from `chunks` in order, then commit with the expected digest,
   * size and labels. A blob already in the store is not an error (containerd says AlreadyExists):
   * it gets the labels added instead, since they are what keeps our snapshots from gc.
   */
  async writeContent(ref: string, desc: Descriptor, chunks: AsyncIterable<Buffer> | Iterable<Buffer>, labels: Record<string, string> = {}): Promise<void> {
    const c = this.client('content') as unknown as { Write(md: grpc.Metadata): grpc.ClientDuplexStream<object, { action: string; offset: number }> }
    const stream = c.Write(this.metadata())
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', () => undefined)
      stream.on('error', (e: unknown) => reject(e))
      stream.on('end', () => resolve())
    })
    // A rejection before we await `done` must not become an unhandled one.
    done.catch(() => undefined)
    try {
      let offset = 0
      for await (const data of chunks) {
        if (data.length === 0) continue
        // If the stream fails while we wait for drain, `done` rejects: never wait on a dead stream.
        if (!stream.write({ action: 'WRITE', ref, total: desc.size, expected: desc.digest, offset, data })) await Promise.race([once(stream, 'drain'), done])
        offset += data.length
      }
      stream.write({ action: 'COMMIT', ref, total: desc.size, expected: desc.digest, offset, labels })
      stream.end()
      await done
    } catch (e) {
      stream.cancel()
      const t = e instanceof StargzError ? e : translate(e, `content.Write ${desc.digest}`)
      if (!(t instanceof AlreadyExistsError)) throw t
      await this.labelContent(desc.digest, labels)
    }
  }

  /** Close every channel; safe to call twice. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const c of this.clients.values()) c.close()
    this.clients.clear()
  }
}
