/**
 * On-disk layout under the root:
 *
 *   <root>/metadata.db              the metadata store (src/store)
 *   <root>/snapshots/<id>/fs        overlay upperdir of an active snapshot, the committed layer's
 *                                   contents, or the FUSE mountpoint of a remote snapshot
 *   <root>/snapshots/<id>/work      overlay workdir (active snapshots only)
 *   <root>/snapshots/new-XXXXXX     a snapshot being created, renamed to <id> in its transaction
 */
import { join } from 'node:path'

export class SnapshotPaths {
  readonly snapshots: string
  readonly metadata: string
  constructor(readonly root: string) {
    this.snapshots = join(root, 'snapshots')
    this.metadata = join(root, 'metadata.db')
  }
  dir(id: number): string {
    return join(this.snapshots, String(id))
  }
  fs(id: number): string {
    return join(this.snapshots, String(id), 'fs')
  }
  work(id: number): string {
    return join(this.snapshots, String(id), 'work')
  }
}
