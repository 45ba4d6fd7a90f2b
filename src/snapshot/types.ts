/** Snapshot service types, in containerd's terms (snapshots.Info, mount.Mount, snapshots.Usage). */
export type Kind = 'active' | 'view' | 'committed'

export interface Info {
  /** Key of an active/view snapshot or name of a committed one. */
  name: string
  /** Name of the parent ('' for none). */
  parent: string
  kind: Kind
  labels: Record<string, string>
  /** Microseconds since the epoch. */
  createdUs: number
  updatedUs: number
}

export interface Mount {
  type: string
  source: string
  target?: string
  options: string[]
}

export interface Usage {
  size: number
  inodes: number
}

/** Per-request context: the containerd namespace header, when the caller sent one. */
export interface RequestContext {
  namespace?: string | undefined
}
