/**
 * runtime.v1.ImageService on a unix socket of ours, forwarding every call to the backing CRI
 * image service (containerd's CRI socket). kubelet is pointed here with --image-service-endpoint;
 * its runtime calls keep going to containerd directly.
 *
 * Calls are forwarded as the caller's bytes with the caller's metadata and deadline, and the
 * answer (or the gRPC status) comes back unchanged: the proxy never re-encodes, so fields our
 * .proto leaves out survive. PullImage is also decoded, to keep its AuthConfig in the keychain
 * before containerd starts the pull (the pull's Prepare calls are what mount the layers lazily).
 *
 * Owns its server and the backend channel; close() ends both and unlinks the socket. Safe twice.
 */
import { chmod, mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { removeStaleSocket } from '../grpc/server.js'
import type { Logger } from '../log/logger.js'
import type { CriAuthConfig, CriKeychain } from './keychain.js'
import { IMAGE_SERVICE, criService } from './proto.js'

export interface ImageServiceProxy {
  address: string
  close(): Promise<void>
}

export interface ImageServiceProxyOptions {
  /** Socket to listen on. */
  address: string
  /** The backing CRI image service socket (reference: `image_service_path`). */
  backend: string
  keychain: CriKeychain
  log: Logger
  socketMode?: number
}

interface PullImageRequest { image?: { image?: string } | null; auth?: CriAuthConfig | null }

const raw = (b: Buffer): Buffer => b
const MAX_MESSAGE = 64 * 1024 * 1024

export async function startImageServiceProxy(opts: ImageServiceProxyOptions): Promise<ImageServiceProxy> {
  const { address, log } = opts
  const typed = criService(IMAGE_SERVICE)
  const pullDecode = typed.PullImage?.requestDeserialize as ((b: Buffer) => PullImageRequest) | undefined
  if (!pullDecode) throw new Error(`${IMAGE_SERVICE}.PullImage missing from the CRI proto`)

  const backend = new grpc.Client(`unix:${opts.backend}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
  })
  const def: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {}
  const impl: grpc.UntypedServiceImplementation = {}
  for (const [name, m] of Object.entries(typed)) {
    if (m.requestStream || m.responseStream) continue // none in the subset we serve
    def[name] = { ...m, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw }
    const handler: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
      if (name === 'PullImage') notePull(call.request)
      const deadline = call.getDeadline()
      const out = backend.makeUnaryRequest(m.path, raw, raw, call.request, call.metadata, deadline === Infinity ? {} : { deadline }, (err, res) => {
        if (err) {
          log.debug({ method: name, code: err.code }, 'cri call failed at the backend')
          callback({ code: err.code, details: err.details, metadata: err.metadata })
        } else {
          callback(null, res)
        }
      })
      call.on('cancelled', () => out.cancel())
    }
    impl[name] = handler
  }

  function notePull(req: Buffer): void {
    let decoded: PullImageRequest
    try {
      decoded = pullDecode?.(req) ?? {}
    } catch {
      return // containerd will answer the malformed request itself
    }
    const image = decoded.image?.image ?? ''
    if (image === '') return
    let kept = false
    try {
      kept = opts.keychain.remember(image, decoded.auth)
    } catch (e) {
      log.warn({ image, err: (e as Error).message }, 'cri-keychain: image reference not understood; credentials not kept')
      return
    }
    // Only the reference and whether credentials came: never the AuthConfig itself.
    log.info({ image, keychain: kept ? 'kept' : 'no credentials' }, 'cri-pull')
  }

  await mkdir(dirname(address), { recursive: true, mode: 0o711 })
  await removeStaleSocket(address)
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE, 'grpc.max_send_message_length': MAX_MESSAGE })
  server.addService(def as grpc.ServiceDefinition, impl)
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
    })
    await chmod(address, opts.socketMode ?? 0o660)
  } catch (e) {
    server.forceShutdown()
    backend.close()
    throw e
  }
  log.info({ address, backend: opts.backend }, 'cri image service proxy listening')
  let closing: Promise<void> | undefined
  return {
    address,
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((r) => {
          const timer = setTimeout(() => { server.forceShutdown(); r() }, 5_000)
          server.tryShutdown(() => { clearTimeout(timer); r() })
        })
        backend.close()
        await rm(address, { force: true })
      })()
      return closing
    },
  }
}
