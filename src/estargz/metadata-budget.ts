/**
 * A daemon-wide budget for layer metadata (parsed TOCs and their indexes). Per-layer TOC limits
 * alone let N layers each take the maximum; this bounds their sum. A layer whose TOC does not fit
 * is refused with a LimitError naming the budget, so the daemon falls back to a full pull for
 * that layer and its log says why, instead of the process growing until it is killed.
 *
 * The cost of a TOC is estimated from its JSON size before it is parsed (the parse is where the
 * memory goes), and reserved until the reader that holds it is released.
 */
import { LimitError } from '../errors.js'

/**
 * Estimated bytes per byte of TOC JSON while it is parsed and once it is indexed. Measured
 * (2026-12-01, 20k and 100k entries of small files, heap + external after GC): the parsed TOC
 * and index retain 3.9-4.0 bytes per JSON byte (~1.4 KB per entry); the parse itself briefly
 * holds the inflated tar, the JSON string and the object graph together, hence 8.
 */
export const TOC_COST_PER_JSON_BYTE = 8

/**
 * Default daemon-wide budget: 2 GiB of estimated metadata, i.e. about 256 MiB of TOC JSON
 * (~750k entries) mounted at once. One hostile layer at the per-layer limit (512 MiB of JSON)
 * is refused outright instead of costing gigabytes.
 */
export const DEFAULT_METADATA_BUDGET_BYTES = 2 * 1024 * 1024 * 1024

export function estimateTocCost(jsonBytes: number): number {
  return jsonBytes * TOC_COST_PER_JSON_BYTE
}

export interface MetadataReservation {
  readonly bytes: number
  /** Safe to call twice. */
  release(): void
}

export class MetadataBudget {
  private used = 0
  private held = 0

  constructor(private limit: number = DEFAULT_METADATA_BUDGET_BYTES) {}

  get maxBytes(): number { return this.limit }
  get usedBytes(): number { return this.used }
  /** Reservations not yet released. */
  get reservations(): number { return this.held }

  /** Change the bound (config); reservations already made stay. */
  setMaxBytes(n: number): void {
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`metadata budget must be a non-negative number of bytes, got ${n}`)
    this.limit = n
  }

  /** Reserve `bytes` for `what`, or throw a LimitError that says how much is in use. */
  reserve(bytes: number, what: string): MetadataReservation {
    if (this.used + bytes > this.limit) {
      throw new LimitError(`${what} needs an estimated ${bytes} bytes of metadata memory; ${this.used} of the daemon-wide metadata budget of ${this.limit} bytes are in use (config metadata_budget_mb)`)
    }
    this.used += bytes
    this.held++
    let released = false
    return {
      bytes,
      release: () => {
        if (released) return
        released = true
        this.used -= bytes
        this.held--
      },
    }
  }
}

/** The budget every EstargzReader draws from unless given another (one per process). */
export const defaultMetadataBudget = new MetadataBudget()
