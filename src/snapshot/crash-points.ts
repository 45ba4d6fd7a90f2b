/**
 * TEST HOOK, not a feature: `STARGZD_CRASH_AT=<point>` in stargzd's environment makes the process
 * kill itself with SIGKILL when it reaches that step of Prepare, Commit or Remove — a crash
 * exactly there, with no handler, no unmount, no rollback beyond SQLite's own. The crash-point
 * test (test/restart/crash-points.test.ts) runs every point, restarts the daemon, and checks that
 * the metadata store, the snapshot directories and the mounts agree and nothing leaked.
 * Unset (always, outside that test) this is one string comparison per step.
 */

/** Every point, in the order a lazy pull + container start + commit + cleanup passes them. */
export const CRASH_POINTS = [
  /** Prepare: the temp dir (new-<pid>-…) exists, no record yet. */
  'prepare:temp-dir',
  /** Prepare: inside the insert transaction, the temp dir renamed to snapshots/<id>, not committed. */
  'prepare:renamed',
  /** Prepare: the active record committed, its dir in place; remote mount not started. */
  'prepare:recorded',
  /** Prepare (remote): the lazy layer mounted at <id>/fs, the snapshot still active. */
  'prepare:mounted',
  /** Prepare (remote): committed as the chain ID with the remote label, AlreadyExists not sent. */
  'prepare:remote-committed',
  /** Commit: usage measured, the commit transaction not run. */
  'commit:measured',
  /** Commit: committed, the answer not sent. */
  'commit:committed',
  /** Remove: the record deleted, the dir (and a remote layer's mount) still there. */
  'remove:deleted',
  /** Remove (remote): the layer unmounted, its dir not removed yet. */
  'remove:unmounted',
] as const

export type CrashPoint = (typeof CRASH_POINTS)[number]

export const CRASH_ENV = 'STARGZD_CRASH_AT'

const armed = process.env[CRASH_ENV]

export function crashPoint(point: CrashPoint): void {
  if (armed === point) process.kill(process.pid, 'SIGKILL')
}
