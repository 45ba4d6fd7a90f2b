/**
 * The benchmark's gzindex mode (src/bench/run-bench.ts): index the gzip image just pushed to the
 * bench registry and push the indexes beside it, as a user runs `stargz index REF`.
 */
import { RegistryClient } from '../registry/client.js'
import { StaticCredentials } from '../registry/credentials.js'
import { indexImage } from './image.js'

export async function benchIndexImage(ref: string, log: (msg: string) => void): Promise<void> {
  const client = new RegistryClient({ plainHttp: true, credentials: new StaticCredentials({}) })
  try {
    for (const r of await indexImage(client, ref)) {
      log(`  indexed ${r.layer.digest.slice(0, 19)}: ${r.spans} spans, ${r.files} files, index ${(r.indexBytes / 1e6).toFixed(2)} MB (${(100 * r.indexBytes / r.layer.size).toFixed(2)}% of ${(r.layer.size / 1e6).toFixed(1)} MB) in ${r.seconds.toFixed(1)} s (${(r.uncompressedBytes / 1e6 / r.seconds).toFixed(1)} MB/s)`)
    }
  } finally {
    await client.close()
  }
}
