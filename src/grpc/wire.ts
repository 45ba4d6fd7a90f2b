/** Conversions between snapshot types and the proto-loader message objects. */
import type { Info, Kind, Mount } from '../snapshot/types.js'

export interface TimestampMsg { seconds: number; nanos: number }
export interface MountMsg { type: string; source: string; target: string; options: string[] }
export type KindName = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED'
export interface InfoMsg {
  name: string
  parent: string
  kind: KindName
  created_at: TimestampMsg | null
  updated_at: TimestampMsg | null
  labels: Record<string, string>
}

const KIND_NAMES: Record<Kind, KindName> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' }

export function toTimestamp(us: number): TimestampMsg {
  const seconds = Math.floor(us / 1e6)
  return { seconds, nanos: Math.round(us - seconds * 1e6) * 1000 }
}

export function fromTimestamp(t: TimestampMsg | null | undefined): number {
  return t ? Number(t.seconds) * 1e6 + Math.floor(Number(t.nanos) / 1000) : 0
}

export function toInfoMsg(i: Info): InfoMsg {
  return {
    name: i.name,
    parent: i.parent,
    kind: KIND_NAMES[i.kind],
    created_at: toTimestamp(i.createdUs),
    updated_at: toTimestamp(i.updatedUs),
    labels: { ...i.labels },
  }
}

export function fromKindName(k: KindName | string): Kind | undefined {
  switch (k) {
    case 'VIEW': return 'view'
    case 'ACTIVE': return 'active'
    case 'COMMITTED': return 'committed'
    default: return undefined
  }
}

export function toMountMsgs(mounts: Mount[]): MountMsg[] {
  return mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] }))
}
