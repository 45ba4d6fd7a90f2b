/**
 * Crash-safe metadata store on SQLite.
 *
 * - WAL journal: readers never block the writer, and a crash mid-transaction leaves the last
 *   committed state.
 * - synchronous=FULL: in WAL mode NORMAL may lose the last transactions on power loss (it does
 *   not corrupt). Losing a commit we already acknowledged to containerd would leave containerd's
 *   metadata pointing at a snapshot we forgot, so we pay one fsync per transaction; snapshot
 *   transactions are a handful per layer or container, never a hot path.
 * - foreign_keys=ON: a parent row cannot be deleted while a child points at it.
 *
 * better-sqlite3 is synchronous, so a transaction is a synchronous function: no await inside, no
 * interleaving with other requests. Filesystem work that must be atomic with a transaction
 * (renaming a snapshot dir into place) is done synchronously inside `fn`; slow work (mounts,
 * directory walks, removals) happens before or after.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { openDatabase, type Database } from './sqlite.js'
import { MIGRATIONS } from './schema.js'

export class MetaStore {
  readonly path: string
  private db: Database | undefined

  private constructor(path: string, db: Database) {
    this.path = path
    this.db = db
  }

  static open(path: string): MetaStore {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    const db = openDatabase(path)
    try {
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = FULL')
      db.pragma('foreign_keys = ON')
      const version = db.pragma('user_version', { simple: true }) as number
      if (version > MIGRATIONS.length) {
        throw new Error(`metadata store ${path} has schema version ${version}, newer than this stargzd knows (${MIGRATIONS.length})`)
      }
      db.transaction(() => {
        for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v] as string)
        db.pragma(`user_version = ${MIGRATIONS.length}`)
      }).immediate()
    } catch (e) {
      db.close()
      throw e
    }
    return new MetaStore(path, db)
  }

  /** The open database, for the record helpers; throws after close(). */
  get database(): Database {
    if (!this.db) throw new Error(`metadata store ${this.path} is closed`)
    return this.db
  }

  /**
   * Run `fn` in one write transaction (BEGIN IMMEDIATE): it commits when `fn` returns and rolls
   * back when it throws. Nested calls join the outer transaction (savepoints).
   */
  withTransaction<R>(fn: (db: Database) => R): R {
    const db = this.database
    return db.transaction(() => fn(db)).immediate()
  }

  /** A read-only view; a plain read sees one consistent snapshot of the database. */
  read<R>(fn: (db: Database) => R): R {
    const db = this.database
    return db.transaction(() => fn(db)).deferred()
  }

  close(): void {
    const db = this.db
    this.db = undefined
    if (db?.open) db.close()
  }
}
