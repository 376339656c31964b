/**
 * Image records in the metadata store, keyed by image id, with every record
 * also kept in memory: the agent is the store's only writer, and ListImages
 * with thousands of records would otherwise read and decode all of them from
 * LevelDB on every call. Writes go to the store and the memory together.
 */
import type { Db, Table } from '../store/db.js'
import type { ImageRecord } from './shapes.js'

export type ImageRecords = Table<ImageRecord>

export function imageRecords(db: Db): ImageRecords {
  return cachedTable(db.table<ImageRecord>('images'))
}

export function cachedTable<T>(store: Table<T>): Table<T> {
  let all: Promise<Map<string, T>> | undefined
  let sorted: Array<[string, T]> | undefined
  const load = () => (all ??= store.entries().then((es) => new Map(es)))
  /**
   * Memory follows each call as it is made (so later calls see it at once);
   * a failed store write drops the memory, to be read again from the store.
   */
  async function write(apply: (m: Map<string, T>) => void, persist: () => Promise<void>): Promise<void> {
    const m = await load()
    apply(m)
    sorted = undefined
    try {
      await persist()
    } catch (e) {
      all = undefined
      sorted = undefined
      throw e
    }
  }
  const ordered = async () => (sorted ??= [...(await load())].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return {
    get: async (key) => (await load()).get(key),
    put: (key, value) => write((m) => m.set(key, value), () => store.put(key, value)),
    del: (key) => write((m) => m.delete(key), () => store.del(key)),
    values: async () => (await ordered()).map(([, v]) => v),
    entries: async () => [...(await ordered())],
    batch: (ops) => write((m) => { for (const o of ops) { if (o.type === 'put') m.set(o.key, o.value); else m.delete(o.key) } }, () => store.batch(ops)),
  }
}
