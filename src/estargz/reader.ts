import { loadToc, type LoadedToc, type LoadTocOptions } from './toc-read.js'
import { TocIndex, type LayerIndex } from './toc-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type Footer, type RangeSource, type Toc, type TocEntry } from './types.js'
import { defaultMetadataBudget, estimateTocCost, type MetadataBudget, type MetadataReservation } from './metadata-budget.js'

export interface ReaderOptions extends LoadTocOptions {
  /**
   * Legacy (CRFS) TOCs may lack chunk digests; readers built over this one (ChunkReader) refuse
   * chunks they cannot verify unless this is set.
   */
  allowUnverified?: boolean
  /** Where the TOC's memory is accounted. Default: the process-wide budget. */
  budget?: MetadataBudget
  /**
   * How footer and TOC are loaded. Default: from the blob (loadToc). The daemon's restore passes a
   * loader over its persisted copy (src/layer/layer-store.ts), which verifies them the same way.
   */
  loadToc?: (source: RangeSource, opts: LoadTocOptions) => Promise<LoadedToc>
}

/**
 * What ChunkReader and the layer need of an opened blob: its source, footer, verified TOC digest
 * and index. EstargzReader (the parsed TOC objects: the CLI, tools) and the compact path
 * (src/index/compact-blob.ts: the mount path, no TOC objects) are the two.
 */
export interface IndexedBlob {
  readonly source: RangeSource
  readonly footer: Footer
  readonly tocDigest: string
  readonly index: LayerIndex
  readonly allowUnverified: boolean
  /** Give the index's memory back (budget). Safe to call twice. */
  release(): void
}

/**
 * The metadata of one eStargz blob: footer, verified TOC and its index. Bytes of files leave the
 * blob only through src/reader/chunk-reader.ts (one byte path for FUSE, the daemon and the CLI).
 *
 * The TOC's estimated memory is reserved in a daemon-wide budget before it is parsed; whoever
 * owns the reader calls release() when done with it (ChunkReader.close() does).
 */
export class EstargzReader implements IndexedBlob {
  private constructor(
    readonly source: RangeSource,
    readonly footer: Footer,
    readonly toc: Toc,
    readonly tocDigest: string,
    readonly index: TocIndex,
    readonly allowUnverified: boolean,
    private readonly reservation: MetadataReservation | undefined,
  ) {}

  static async open(source: RangeSource, opts: ReaderOptions = {}): Promise<EstargzReader> {
    const budget = opts.budget ?? defaultMetadataBudget
    let reservation: MetadataReservation | undefined
    const loadOpts: LoadTocOptions = {
      ...opts,
      beforeParse: (jsonBytes: number) => {
        opts.beforeParse?.(jsonBytes)
        reservation = budget.reserve(estimateTocCost(jsonBytes), `TOC of ${jsonBytes} bytes`)
      },
    }
    try {
      const loaded = await (opts.loadToc ?? loadToc)(source, loadOpts)
      const f = loaded.footer
      const index = new TocIndex(loaded.toc, f.payloadEnd ?? f.tocOffset, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK }, f.kind === 'zstd' ? 'zstd' : 'gzip')
      return new EstargzReader(source, loaded.footer, loaded.toc, loaded.tocDigest, index, opts.allowUnverified ?? false, reservation)
    } catch (e) {
      reservation?.release()
      throw e
    }
  }

  lookup(name: string): TocEntry | undefined {
    return this.index.entries.get(normaliseLookup(name))
  }

  /** Give the TOC's share of the metadata budget back. Safe to call twice. */
  release(): void {
    this.reservation?.release()
  }
}

export function normaliseLookup(name: string): string {
  return name.split('/').filter((p) => p !== '' && p !== '.').join('/')
}
