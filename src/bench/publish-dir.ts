/**
 * Publish a cache entry built in `partial` as `final` with one rename, so readers never see a
 * half-built entry. When a concurrent builder got there first (ENOTEMPTY/EEXIST) and its entry is
 * complete (`marker` exists), theirs is as good as ours: drop ours.
 */
import { existsSync } from 'node:fs'
import { rename, rm } from 'node:fs/promises'

export async function publishDir(partial: string, final: string, marker: string): Promise<void> {
  try {
    await rename(partial, final)
  } catch (e) {
    if (!existsSync(marker)) throw e
    await rm(partial, { recursive: true, force: true })
  }
}
