/**
 * Lists of files to put first in layers (`--prioritized-from`, `--record-out`). One record per
 * line, either a bare path or a JSON object:
 *
 *   /usr/bin/python3
 *   {"path": "/usr/bin/python3", "layer": "sha256:…", "layerIndex": 0}
 *
 * `layer` is the source layer's digest and `layerIndex` its position (0 = bottom); a record with
 * neither applies to every layer (a layer that lacks the file ignores it). Order is first-access
 * order and is kept.
 */
import { readFile } from 'node:fs/promises'
import { InvalidArgumentError, NotFoundError } from '../errors.js'

export interface PrioritizedRecord {
  path: string
  layer?: string
  layerIndex?: number
}

export function parsePrioritizedList(text: string, where: string): PrioritizedRecord[] {
  const out: PrioritizedRecord[] = []
  const lines = text.split('\n')
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '')
    if (line.trim() === '') continue
    if (!line.trimStart().startsWith('{')) { out.push({ path: line }); continue }
    let j: unknown
    try { j = JSON.parse(line) } catch (e) {
      throw new InvalidArgumentError(`${where} line ${i + 1}: not valid JSON: ${(e as Error).message}`, { cause: e })
    }
    const o = j as Record<string, unknown>
    if (typeof o.path !== 'string' || o.path === '') throw new InvalidArgumentError(`${where} line ${i + 1}: needs a non-empty "path" string`)
    const rec: PrioritizedRecord = { path: o.path }
    if (o.layer !== undefined) {
      if (typeof o.layer !== 'string' || !/^[a-z0-9]+:[a-f0-9]+$/.test(o.layer)) throw new InvalidArgumentError(`${where} line ${i + 1}: "layer" must be a digest`)
      rec.layer = o.layer
    }
    if (o.layerIndex !== undefined) {
      if (typeof o.layerIndex !== 'number' || !Number.isSafeInteger(o.layerIndex) || o.layerIndex < 0) throw new InvalidArgumentError(`${where} line ${i + 1}: "layerIndex" must be a non-negative integer`)
      rec.layerIndex = o.layerIndex
    }
    out.push(rec)
  }
  return out
}

export async function readPrioritizedList(path: string): Promise<PrioritizedRecord[]> {
  let text: string
  try { text = await readFile(path, 'utf8') } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`prioritized file list ${path} does not exist`, { cause: e })
    throw new InvalidArgumentError(`cannot read prioritized file list ${path}: ${(e as Error).message}`, { cause: e })
  }
  return parsePrioritizedList(text, path)
}

/** The paths for one layer, in order, without duplicates. A `layer` digest wins over `layerIndex`. */
export function pathsForLayer(records: readonly PrioritizedRecord[], digest: string, index: number): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  for (const r of records) {
    const applies = r.layer !== undefined ? r.layer === digest : r.layerIndex !== undefined ? r.layerIndex === index : true
    if (applies && !seen.has(r.path)) { seen.add(r.path); out.push(r.path) }
  }
  return out
}

export function formatPrioritizedList(records: readonly PrioritizedRecord[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length > 0 ? '\n' : '')
}
