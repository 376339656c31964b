/**
 * The one module that opens the metadata store (level). Both programs (the
 * agent and the image service) keep JSON records in named tables over one
 * LevelDB directory each. Every write is a single atomic put/batch.
 */
import { Level } from 'level'

export interface Table<T> {
  get(key: string): Promise<T | undefined>
  put(key: string, value: T): Promise<void>
  del(key: string): Promise<void>
  /** All records in key order. */
  values(): Promise<T[]>
  entries(): Promise<Array<[string, T]>>
  /** Atomically write and delete several keys. */
  batch(ops: ReadonlyArray<{ type: 'put'; key: string; value: T } | { type: 'del'; key: string }>): Promise<void>
}

export interface Db {
  table<T>(name: string): Table<T>
  close(): Promise<void>
}

export async function openDb(path: string): Promise<Db> {
  const db = new Level<string, unknown>(path, { valueEncoding: 'json' })
  await db.open()
  return {
    table<T>(name: string): Table<T> {
      const sub = db.sublevel<string, T>(name, { valueEncoding: 'json' })
      return {
        get: async (key) => (await sub.get(key)) ?? undefined,
        put: (key, value) => sub.put(key, value),
        del: (key) => sub.del(key),
        values: () => sub.values().all(),
        entries: async () => (await sub.iterator().all()) as Array<[string, T]>,
        batch: (ops) => sub.batch(ops.map((o) => (o.type === 'put' ? { type: 'put' as const, key: o.key, value: o.value } : { type: 'del' as const, key: o.key }))),
      }
    },
    close: () => db.close(),
  }
}
