/**
 * The mounts containerd performs for a snapshot (containerd's overlay snapshotter rules):
 *
 * - no parents: bind mount of the snapshot's own fs dir, rw for active, ro for a view
 * - view with one parent: read-only bind of that parent's fs dir
 * - otherwise overlay: lowerdir = parents' fs dirs nearest first (for remote layers these are the
 *   FUSE mountpoints), plus upperdir/workdir for an active snapshot
 */
import type { OverlayOptions } from './overlay-options.js'
import type { SnapshotPaths } from './paths.js'
import type { Kind, Mount } from './types.js'

export function snapshotMounts(paths: SnapshotPaths, overlay: OverlayOptions, kind: Kind, id: number, parentIds: readonly number[]): Mount[] {
  if (parentIds.length === 0) {
    return [{ type: 'bind', source: paths.fs(id), options: [kind === 'view' ? 'ro' : 'rw', 'rbind'] }]
  }
  if (kind !== 'active' && parentIds.length === 1) {
    return [{ type: 'bind', source: paths.fs(parentIds[0] as number), options: ['ro', 'rbind'] }]
  }
  const options: string[] = []
  if (overlay.indexOff) options.push('index=off')
  if (overlay.userxattr) options.push('userxattr')
  if (kind === 'active') options.push(`workdir=${paths.work(id)}`, `upperdir=${paths.fs(id)}`)
  options.push(`lowerdir=${parentIds.map((p) => paths.fs(p)).join(':')}`)
  return [{ type: 'overlay', source: 'overlay', options }]
}
