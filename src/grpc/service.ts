/**
 * containerd.services.snapshots.v1.Snapshots over a Snapshotter. The `snapshotter` field of each
 * request names the proxy plugin in containerd's config and is ignored: this process serves one.
 * The containerd namespace comes in the `containerd-namespace` metadata header.
 */
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation, Metadata } from '@grpc/grpc-js'
import type { Logger } from '../log/logger.js'
import type { Snapshotter } from '../snapshot/snapshotter.js'
import type { RequestContext } from '../snapshot/types.js'
import { grpcCode, toServiceError } from './status.js'
import { status as Status } from '@grpc/grpc-js'
import { toInfoMsg, toMountMsgs, type InfoMsg } from './wire.js'
import { errorMessage } from '../errors.js'

export const NAMESPACE_HEADER = 'containerd-namespace'

/** List answers in blocks, as containerd's own service does. */
export const LIST_BATCH = 100

interface KeyReq { key: string }
interface CreateReq { key: string; parent: string; labels: Record<string, string> }
interface CommitReq { name: string; key: string; labels: Record<string, string> }
interface UpdateReq { info: InfoMsg | null; update_mask: { paths: string[] } | null }
interface ListReq { filters: string[] }

export function requestContext(md: Metadata): RequestContext {
  const v = md.get(NAMESPACE_HEADER)[0]
  const ns = typeof v === 'string' ? v : v instanceof Buffer ? v.toString('utf8') : undefined
  return { namespace: ns === undefined || ns === '' ? undefined : ns }
}

export interface ServiceHooks {
  /** Called when a call starts and when it ends; the server uses it to drain on shutdown. */
  track?: <T>(p: Promise<T>) => Promise<T>
}

export function snapshotsService(sn: Snapshotter, log: Logger, hooks: ServiceHooks = {}): UntypedServiceImplementation {
  const track = hooks.track ?? (<T>(p: Promise<T>) => p)

  function report(method: string, ctx: RequestContext, e: unknown): void {
    const code = grpcCode(e)
    const fields = { method, namespace: ctx.namespace, code: Status[code], err: errorMessage(e) }
    // NotFound/AlreadyExists/... are answers, not failures (AlreadyExists is how remote layers succeed).
    if (code === Status.UNKNOWN || code === Status.UNAVAILABLE) log.warn(fields, 'request failed')
    else log.debug(fields, 'request refused')
  }

  function unary<Req, Res>(method: string, fn: (ctx: RequestContext, req: Req) => Promise<Res> | Res) {
    return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>): void => {
      const ctx = requestContext(call.metadata)
      log.debug({ method, namespace: ctx.namespace, req: call.request }, 'request')
      const t0 = performance.now()
      void track(Promise.resolve().then(() => fn(ctx, call.request)).then(
        (res) => {
          log.debug({ method, ms: +(performance.now() - t0).toFixed(2) }, 'response')
          cb(null, res)
        },
        (e: unknown) => {
          log.debug({ method, ms: +(performance.now() - t0).toFixed(2) }, 'response')
          report(method, ctx, e)
          cb(toServiceError(e), null)
        },
      ))
    }
  }

  return {
    Prepare: unary<CreateReq, unknown>('Prepare', async (ctx, r) => ({ mounts: toMountMsgs(await sn.prepare(ctx, r.key, r.parent, r.labels ?? {})) })),
    View: unary<CreateReq, unknown>('View', async (ctx, r) => ({ mounts: toMountMsgs(await sn.view(ctx, r.key, r.parent, r.labels ?? {})) })),
    Mounts: unary<KeyReq, unknown>('Mounts', async (ctx, r) => ({ mounts: toMountMsgs(await sn.mounts(ctx, r.key)) })),
    Commit: unary<CommitReq, unknown>('Commit', async (ctx, r) => {
      await sn.commit(ctx, r.name, r.key, r.labels ?? {})
      return {}
    }),
    Remove: unary<KeyReq, unknown>('Remove', async (ctx, r) => {
      await sn.remove(ctx, r.key)
      return {}
    }),
    Stat: unary<KeyReq, unknown>('Stat', (ctx, r) => ({ info: toInfoMsg(sn.stat(ctx, r.key)) })),
    Update: unary<UpdateReq, unknown>('Update', (ctx, r) => {
      const info = r.info ?? { name: '', labels: {} }
      const updated = sn.update(ctx, { name: info.name, labels: info.labels ?? {} }, r.update_mask?.paths ?? [])
      return { info: toInfoMsg(updated) }
    }),
    Usage: unary<KeyReq, unknown>('Usage', async (ctx, r) => sn.usage(ctx, r.key)),
    Cleanup: unary<unknown, unknown>('Cleanup', async () => {
      await sn.cleanup()
      return {}
    }),
    List: (call: ServerWritableStream<ListReq, unknown>): void => {
      const ctx = requestContext(call.metadata)
      void track((async () => {
        try {
          const infos = sn.list(ctx, call.request.filters ?? [])
          for (let i = 0; i < infos.length; i += LIST_BATCH) {
            if (call.cancelled) return
            const ok = call.write({ info: infos.slice(i, i + LIST_BATCH).map(toInfoMsg) })
            if (!ok) {
              await new Promise<void>((resolve) => {
                call.once('drain', resolve)
                call.once('cancelled', resolve)
                call.once('close', resolve)
              })
            }
          }
          call.end()
        } catch (e) {
          report('List', ctx, e)
          // grpc-js turns an 'error' event on a server stream into the call's final status.
          call.emit('error', toServiceError(e))
        }
      })())
    },
  }
}
