/**
 * A stand-in for stargz-fused in tests of src/fuseproto: serves one eStargz blob file at a
 * mountpoint through the protocol backend with an fd holder, adopting the holder's connection
 * for that mountpoint if it has one. Prints "ready <adopted|fresh>" once serving.
 *
 *   node --import tsx harness/fuseproto-serve.ts BLOB MNT HOLDER_SOCKET [READ_DELAY_MS]
 *
 * READ_DELAY_MS holds every layer read that long (printing "reading NAME" first), so a kill -9 lands
 * while requests are in flight.
 */
import { pino } from 'pino'
import { FileRangeSource } from '../src/estargz/file-source.js'
import { LayerMount } from '../src/fuse/layer-fs.js'
import { ProtoBackend } from '../src/fuseproto/backend.js'
import { HolderClient } from '../src/fuseproto/holder.js'
import { BlobReader } from '../src/reader/blob-reader.js'
import { fileDigest, readerLayer } from './fuse-fixtures.js'

const [blob, mnt, holderSocket, delay] = process.argv.slice(2) as [string, string, string, string | undefined]
const delayMs = Number(delay ?? 0)
const log = pino({ level: process.env.LOG_LEVEL ?? 'warn' })
const backend = new ProtoBackend({ log, holder: new HolderClient(holderSocket) })
await backend.loadHeld()
const adopted = backend.adopting(mnt)
const reader = await BlobReader.open(await FileRangeSource.open(blob))
const layer = readerLayer(reader, await fileDigest(blob))
const read = layer.read.bind(layer)
layer.read = async (name, offset, length, signal) => {
  if (delayMs > 0) {
    // Tests wait for this line to know a request is in flight here (read, not yet answered).
    process.stdout.write(`reading ${name}\n`)
    await new Promise((r) => setTimeout(r, delayMs))
  }
  return read(name, offset, length, signal)
}
const m = await LayerMount.mount(layer, mnt, { backend, readAheadKib: 0, logger: log })
process.stdout.write(`ready ${adopted ? 'adopted' : 'fresh'}\n`)
process.on('SIGTERM', () => { void m.close().finally(() => process.exit(0)) })
