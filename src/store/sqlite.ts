/**
 * The few better-sqlite3 calls the store uses, typed here: @types/better-sqlite3 is not installed,
 * and a hand-written ambient `declare module` would clash the day it is. Loading through
 * createRequire keeps the types local to this file.
 */
import { createRequire } from 'node:module'

export interface RunResult {
  changes: number
  lastInsertRowid: number | bigint
}

export interface Statement<Row> {
  run(...params: unknown[]): RunResult
  get(...params: unknown[]): Row | undefined
  all(...params: unknown[]): Row[]
}

export interface TransactionFn<R> {
  (): R
  immediate(): R
  deferred(): R
}

export interface Database {
  prepare<Row = unknown>(sql: string): Statement<Row>
  exec(sql: string): void
  pragma(source: string, options?: { simple?: boolean }): unknown
  transaction<R>(fn: () => R): TransactionFn<R>
  close(): void
  readonly open: boolean
  readonly inTransaction: boolean
}

type DatabaseConstructor = new (path: string, options?: { fileMustExist?: boolean; timeout?: number }) => Database

const require = createRequire(import.meta.url)
const BetterSqlite3 = require('better-sqlite3') as DatabaseConstructor

export function openDatabase(path: string): Database {
  // timeout: how long a writer waits for another connection's lock (only another process could
  // hold it: this daemon has one connection). 5 s is far longer than any of our transactions.
  return new BetterSqlite3(path, { timeout: 5000 })
}
