/**
 * On-disk schema of <root>/metadata.db. `PRAGMA user_version` is the schema version; migrations
 * run in order inside one transaction at open.
 *
 * snapshots
 *   id         INTEGER PK AUTOINCREMENT  storage id; also the directory name <root>/snapshots/<id>.
 *                                       AUTOINCREMENT so an id is never reused: a directory left
 *                                       behind by a crash can never be mistaken for a new snapshot.
 *   namespace  TEXT     containerd namespace the key lives in ('' when the caller sent none)
 *   key        TEXT     the snapshot key (active/view) or name (committed); unique per namespace
 *   kind       TEXT     'active' | 'view' | 'committed'
 *   parent_id  INTEGER  id of the parent (always committed), NULL for none. Committed snapshots
 *                       are never renamed, so following ids is stable.
 *   labels     TEXT     JSON object of string → string
 *   created_us / updated_us  INTEGER  microseconds since the epoch (exact in a JS number until year 2255)
 *   size, inodes INTEGER  usage recorded at commit (0 before)
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE snapshots (
     id         INTEGER PRIMARY KEY AUTOINCREMENT,
     namespace  TEXT    NOT NULL,
     key        TEXT    NOT NULL,
     kind       TEXT    NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
     parent_id  INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
     labels     TEXT    NOT NULL DEFAULT '{}',
     created_us INTEGER NOT NULL,
     updated_us INTEGER NOT NULL,
     size       INTEGER NOT NULL DEFAULT 0,
     inodes     INTEGER NOT NULL DEFAULT 0,
     UNIQUE (namespace, key)
   );
   CREATE INDEX snapshots_parent ON snapshots(parent_id);
   CREATE INDEX snapshots_key ON snapshots(key);`,
]
