/**
 * The ImageService proxy on its own, in front of a backend gRPC server written here (the e2e
 * tests put real containerd behind it): requests and answers pass byte for byte, unknown fields
 * included; metadata, deadlines and error statuses (code, details, trailers) come through; the
 * PullImage AuthConfig lands in the keychain and nowhere in the log.
 */
import t from 'tap'
import * as grpc from '@grpc/grpc-js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { startImageServiceProxy } from '../../src/cri/image-proxy.js'
import { CriKeychain } from '../../src/cri/keychain.js'
import { IMAGE_SERVICE, criService } from '../../src/cri/proto.js'
import { createRootLogger } from '../../src/log/logger.js'

const raw = (b: Buffer): Buffer => b
// Field 15, varint 1: no field of ours, so only a byte-for-byte forwarder keeps it.
const UNKNOWN = Buffer.from([0x78, 0x01])

t.test('byte-for-byte forwarding, statuses, metadata, deadlines, keychain', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-criproxy-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const svc = criService(IMAGE_SERVICE)
  const seen: { method: string; bytes: Buffer; meta: grpc.Metadata; deadline: grpc.Deadline }[] = []

  // Backend: records what arrives; PullImage answers a response with an unknown field appended,
  // RemoveImage fails with NOT_FOUND and a trailer.
  const backend = new grpc.Server()
  const def: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {}
  const impl: grpc.UntypedServiceImplementation = {}
  for (const [name, m] of Object.entries(svc)) {
    def[name] = { ...m, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw }
    impl[name] = ((call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen.push({ method: name, bytes: call.request, meta: call.metadata, deadline: call.getDeadline() })
      if (name === 'RemoveImage') {
        const trailer = new grpc.Metadata()
        trailer.set('x-why', 'not-here')
        cb({ code: grpc.status.NOT_FOUND, details: 'image "x" not found', metadata: trailer })
        return
      }
      const res = name === 'PullImage' ? Buffer.concat([(svc.PullImage?.responseSerialize as (v: unknown) => Buffer)({ image_ref: 'sha256:abc' }), UNKNOWN]) : Buffer.alloc(0)
      cb(null, res)
    }) as grpc.handleUnaryCall<Buffer, Buffer>
  }
  backend.addService(def as grpc.ServiceDefinition, impl)
  const backendSock = join(dir, 'backend.sock')
  await new Promise<void>((res, rej) => backend.bindAsync(`unix:${backendSock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())))
  t.teardown(() => backend.forceShutdown())

  const lines: string[] = []
  const log = createRootLogger({ level: 'debug', destination: new Writable({ write(c: Buffer, _e, cb) { lines.push(c.toString()); cb() } }) })
  const keychain = new CriKeychain({ ttlMs: 60_000 })
  const proxy = await startImageServiceProxy({ address: join(dir, 'proxy.sock'), backend: backendSock, keychain, log })
  t.teardown(() => proxy.close())
  const client = new grpc.Client(`unix:${proxy.address}`, grpc.credentials.createInsecure())
  t.teardown(() => client.close())
  const call = (method: string, req: Buffer, meta = new grpc.Metadata()): Promise<{ err: grpc.ServiceError | null; res?: Buffer | undefined }> =>
    new Promise((resolve) => {
      client.makeUnaryRequest(`/runtime.v1.ImageService/${method}`, raw, raw, req, meta, { deadline: Date.now() + 30_000 }, (err, res) => resolve({ err, res }))
    })

  const password = 'hunter2-do-not-log'
  const pullReq = Buffer.concat([
    (svc.PullImage?.requestSerialize as (v: unknown) => Buffer)({ image: { image: 'registry.example:5000/app:1' }, auth: { username: 'kube', password } }),
    UNKNOWN,
  ])
  const meta = new grpc.Metadata()
  meta.set('x-request-id', 'r-1')
  const pulled = await call('PullImage', pullReq, meta)
  t.equal(pulled.err, null, 'PullImage answered')
  t.same(seen.at(-1)?.bytes, pullReq, 'the backend got the caller\'s bytes, unknown field included')
  t.same(seen.at(-1)?.meta.get('x-request-id'), ['r-1'], 'caller metadata forwarded')
  t.ok(Number.isFinite(Number(seen.at(-1)?.deadline)), 'the caller\'s deadline forwarded')
  t.ok(pulled.res?.subarray(-UNKNOWN.length).equals(UNKNOWN), 'the answer came back byte for byte, unknown field included')
  t.same(await keychain.get('registry.example:5000'), { username: 'kube', password }, 'the AuthConfig is in the keychain')

  const removed = await call('RemoveImage', Buffer.alloc(0))
  t.equal(removed.err?.code, grpc.status.NOT_FOUND, 'backend status code passes through')
  t.equal(removed.err?.details, 'image "x" not found', 'with its details')
  t.same(removed.err?.metadata.get('x-why'), ['not-here'], 'and its trailers')

  for (const m of ['ListImages', 'ImageStatus', 'ImageFsInfo']) {
    const r = await call(m, Buffer.alloc(0))
    t.equal(r.err, null, `${m} forwarded`)
  }
  const missing = await call('NoSuchMethod', Buffer.alloc(0))
  t.equal(missing.err?.code, grpc.status.UNIMPLEMENTED, 'a method the service has not: UNIMPLEMENTED')

  // Backend gone: UNAVAILABLE, not a hang.
  backend.forceShutdown()
  const down = await call('ListImages', Buffer.alloc(0))
  t.equal(down.err?.code, grpc.status.UNAVAILABLE, 'backend down: UNAVAILABLE')

  const all = lines.join('')
  t.match(all, /"msg":"cri-pull"/, 'the pull was logged')
  t.notOk(all.includes(password), 'the password is not in the log')
  await proxy.close()
  await proxy.close()
  t.pass('close() twice is safe')
})
