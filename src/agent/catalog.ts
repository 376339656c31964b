/**
 * The image catalog: what the agent knows of each image (the record), kept
 * in level and in memory, and how it is made to agree with the pool at
 * start-up: interrupted imports removed, verified imports whose record a
 * crash lost adopted by the markers set on them, records of vanished
 * datasets forgotten.
 */
import type { Db, Table } from '../common/db.js'
import type { Logger } from '../common/log.js'
import type { ScannedDataset, Zfs } from '../zfs/index.js'
import type { Scope } from './services/scope.js'
import { toMiB } from './services/shapes.js'

export type ImageStatus = 'pending' | 'downloading' | 'complete' | 'error'

/** What the metadata store keeps per image. */
export interface ImageRecord {
  readonly id: string
  readonly type: string
  readonly volume: string
  readonly snapshot: string
  /** MiB */
  readonly size: number
  readonly status: ImageStatus
  /** Where it came from, and its digest when known. */
  readonly source?: string
  readonly sha256?: string
  /** What the image arrived as: a zfs send stream, a raw disk image or qcow2. */
  readonly format?: string
  /** While downloading: bytes so far and the total when known. */
  readonly progress?: { readonly bytes: number; readonly total: number | null }
  /** Why the last fetch failed (status 'error'). */
  readonly error?: string
}

/** Names an import in progress gives its datasets under images/. */
export const INCOMING_PREFIX = '_incoming-'
/** A qcow2 image's bytes while they wait for conversion. */
export const SPOOL_PREFIX = '_spool-'
/** Datasets under images/ that only an import in progress may own. */
export const TEMPORARY_PREFIXES = [INCOMING_PREFIX, SPOOL_PREFIX] as const

/**
 * User properties set on a verified import just before the rename. A dataset
 * that carries them was verified by us: start-up adopts it even if the crash
 * came before its record was written.
 */
export const PROP_IMAGE = 'mistify:image'
export const PROP_SHA256 = 'mistify:sha256'
export const PROP_FORMAT = 'mistify:format'

/** The record of an image not (yet) imported: while it is fetched, or after its fetch failed. */
export function blankRecord(id: string, source: string, status: ImageStatus): ImageRecord {
  return { id, type: '', volume: '', snapshot: '', size: 0, status, source }
}

export type ImageRecords = CachedTable<ImageRecord>

export function imageRecords(db: Db): ImageRecords {
  return cachedTable(db.table<ImageRecord>('images'))
}

export interface CachedTable<T> extends Table<T> {
  /**
   * `derive` over all values in key order, computed again only after a write:
   * for answers built from the whole table (ListImages). Hand the result out, never mutate it.
   */
  memo<R>(derive: (values: readonly T[]) => R): () => Promise<R>
}

export function cachedTable<T>(store: Table<T>): CachedTable<T> {
  let all: Promise<Map<string, T>> | undefined
  let sorted: Array<[string, T]> | undefined
  let generation = 0 // bumped whenever memory changes or is dropped
  // A failed read is not kept: the next call reads again.
  const load = () => (all ??= store.entries().then((es) => new Map(es), (e: unknown) => { all = undefined; throw e }))
  /**
   * Memory follows each call as it is made (so later calls see it at once);
   * a failed store write drops the memory, to be read again from the store.
   */
  async function write(apply: (m: Map<string, T>) => void, persist: () => Promise<void>): Promise<void> {
    const m = await load()
    apply(m)
    sorted = undefined
    generation++
    try {
      await persist()
    } catch (e) {
      all = undefined
      sorted = undefined
      generation++
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
    memo<R>(derive: (values: readonly T[]) => R) {
      let made: { generation: number; value: Promise<R> } | undefined
      return () => {
        // The generation read before the values: a write landing meanwhile only makes the next call derive again.
        if (made?.generation !== generation) {
          const mine = { generation, value: ordered().then((es) => derive(es.map(([, v]) => v))) }
          mine.value.catch(() => { if (made === mine) made = undefined }) // a failed read is not kept
          made = mine
        }
        return made.value
      }
    },
  }
}

/**
 * A verified import renamed into place whose record was never written (a
 * crash between the two): the marks import-image.ts sets before the rename
 * say it is ours and whole, so its record is written now.
 */
async function adopt(zfs: Zfs, ds: ScannedDataset, id: string, snaps: readonly string[], records: ImageRecords, log: Logger): Promise<void> {
  if (snaps.length !== 1) return
  const { volsize } = await zfs.getDataset(ds.name)
  const sha256 = ds.props.get(PROP_SHA256)
  const format = ds.props.get(PROP_FORMAT)
  await records.put(id, {
    id, type: '', volume: ds.name, snapshot: snaps[0]!, size: toMiB(volsize), status: 'complete',
    ...(sha256 ? { sha256 } : {}), ...(format ? { format } : {}),
  })
  log.warn({ image: id }, 'adopted an image imported just before a crash')
}

/** What reconcile needs the start-up scan (zfs.scan) to read besides type and holds: the marks adopt() looks for. */
export const SCAN_PROPS = [PROP_IMAGE, PROP_SHA256, PROP_FORMAT] as const

/**
 * Remove what a crash can leave behind, and records whose dataset is gone.
 * `tree`: the start-up scan of images/ with SCAN_PROPS (zfs.scan), one zfs
 * command for any number of images or datasets not ours; a command per record,
 * or per unknown volume, made start-up grow with the count.
 */
export async function reconcile(zfs: Zfs, scope: Scope, records: ImageRecords, log: Logger, tree: readonly ScannedDataset[]): Promise<void> {
  const prefix = `${scope.images}/`
  const below = tree.filter((d) => d.name.startsWith(prefix))
  const children = below.filter((d) => (d.type === 'volume' || d.type === 'filesystem') && !d.name.slice(prefix.length).includes('/'))
  const known = new Set((await records.values()).map((r) => r.volume))
  const snapshotsOf = (name: string) => below.filter((d) => d.type === 'snapshot' && d.name.startsWith(`${name}@`)).map((d) => d.name)
  for (const ds of children) {
    const child = ds.name.slice(prefix.length)
    if (TEMPORARY_PREFIXES.some((p) => child.startsWith(p))) {
      log.warn({ dataset: ds.name }, 'removing an interrupted import')
      // One leftover that cannot go (a clone was made of it by hand) must not keep the agent down.
      await zfs.destroy(ds.name, { recursive: true }).catch((e: Error) => log.error({ dataset: ds.name, err: e.message }, 'could not remove an interrupted import; left in place'))
    } else if (ds.type === 'volume' && !known.has(ds.name) && ds.props.get(PROP_IMAGE) === child) {
      // Marked by our import as this very image (a CloneImage dest or anything else is left alone).
      await adopt(zfs, ds, child, snapshotsOf(ds.name), records, log)
    }
  }
  const snapshots = new Set(below.filter((d) => d.type === 'snapshot').map((d) => d.name))
  for (const r of await records.values()) {
    if (r.status === 'pending' || r.status === 'downloading') {
      // Nothing resumes a fetch across a restart: say so; the next RequestImage starts afresh.
      log.warn({ image: r.id }, 'fetch interrupted by a restart')
      await records.put(r.id, { ...r, status: 'error', error: 'interrupted: the agent restarted during the fetch' })
    } else if (r.status === 'complete' && !snapshots.has(r.snapshot)) {
      log.warn({ image: r.id, snapshot: r.snapshot }, 'image dataset vanished; forgetting the record')
      await records.del(r.id)
    }
  }
}

