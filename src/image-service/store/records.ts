/**
 * The metadata backend seam under ImageStore: compare-and-swap on one record
 * at a time, a per-name version counter, and transfer ownership. Level (one
 * process owns the data directory) is the default; etcd-records.ts lets
 * several stateless replicas share one etcd cluster.
 */
import { createKeyedLock } from '../../common/keyed-lock.js'
import type { Db, Table } from '../../common/db.js'
import { defaultFormats, isImageType, ZERO_TIME, type ImageRecord } from './store.js'

/** Opaque: only ever handed back to put/del of the same backend. */
export type Rev = string

export interface Versioned {
  value: ImageRecord
  rev: Rev
}

/** A transfer (upload or URL fetch) this replica is running, visible to the others while it lives. */
export interface TransferClaim {
  /**
   * Aborted when this replica lost the claim (its lease lapsed): other replicas may now
   * sweep the record, so claim again (ingest.ts does) or give the transfer up.
   */
  readonly signal: AbortSignal
  release(): Promise<void>
}

export interface RecordBackend {
  /** 'level' or 'etcd' (logs, health). */
  readonly kind: string
  /**
   * true: other replicas write the same records, so a transfer this process
   * does not know about may be live elsewhere (start-up recovery must not
   * touch it; sweepOrphans finds the dead ones instead).
   */
  readonly shared: boolean
  get(id: string): Promise<Versioned | undefined>
  list(): Promise<Versioned[]>
  /** Write when the record is still at `expectedRev` (undefined: must not exist). false on conflict. */
  put(id: string, rec: ImageRecord, expectedRev: Rev | undefined): Promise<boolean>
  /** Delete when the record is still at `expectedRev`. false on conflict (or already gone). */
  del(id: string, expectedRev: Rev): Promise<boolean>
  /** The next version number of a name: atomic across replicas, never handed out twice. */
  nextVersion(name: string): Promise<number>
  /**
   * Take version `n` of a name chosen by the caller: true (and the counter
   * moves to n, so later nextVersion calls go past it) only when n is above
   * every version the name has handed out; atomic across replicas. `claim`
   * (fresh per create) tells a retried call that its first attempt landed.
   */
  claimVersion(name: string, n: number, claim: string): Promise<boolean>
  /** Mark `id`'s transfer as owned by this replica until release() (or until this replica dies). */
  claimTransfer(id: string): Promise<TransferClaim>
  /** Like put, but only while no replica holds a claim on `id` (false otherwise). */
  putIfUnowned(id: string, rec: ImageRecord, expectedRev: Rev): Promise<boolean>
  /** Throws when the backend cannot serve requests. */
  health(): Promise<void>
  close(): Promise<void>
}

/** The request may succeed when tried again (HTTP 503). */
export class RetryableError extends Error {
  override name = 'RetryableError'
}

/** The metadata store did not answer (in time), or kept conflicting. */
export class MetadataUnavailableError extends RetryableError {
  override name = 'MetadataUnavailableError'
}

/** This replica lost ownership of a transfer (its lease expired); the record was or will be marked `error`. */
export class TransferLostError extends RetryableError {
  override name = 'TransferLostError'
  constructor(id: string) {
    super(`image ${id}: this replica lost ownership of the transfer; retry the upload`)
  }
}

/**
 * A stored record with every field present. Records written by the original
 * Go service (or before a field existed) lack our newer fields: they load
 * with the defaults a new record would have. Present keys keep their order.
 */
export function normalizeRecord(raw: unknown, id: string): ImageRecord {
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Partial<ImageRecord>
  const type = isImageType(r.type) ? r.type : 'kvm'
  const when = typeof r.download_start === 'string' && r.download_start !== ZERO_TIME ? r.download_start : ZERO_TIME
  const base: ImageRecord = {
    id, source: '', type, comment: '', status: 'pending', size: 0, expected_size: -1,
    download_start: ZERO_TIME, download_end: ZERO_TIME, sha256: '', md5: '', sha512: '', blake2b512: '',
    name: '', version: 0, created_at: when, updated_at: when, snapshot_guid: '', origin: '', increment: null,
    glance: {
      visibility: 'shared', protected: false, ...defaultFormats(type), min_disk: 0, min_ram: 0,
      tags: [], owner: null, os_hidden: false, properties: {},
    },
  }
  const out = { ...r } as ImageRecord
  for (const [k, v] of Object.entries(base)) if ((out as unknown as Record<string, unknown>)[k] === undefined) (out as unknown as Record<string, unknown>)[k] = v
  out.glance = { ...base.glance, ...(r.glance ?? {}) }
  return out
}

const NO_SIGNAL = new AbortController().signal

/**
 * Level: this process is the only writer (level locks its directory), so an
 * in-process lock makes compare-and-swap exact. A record's revision is its
 * JSON text: equal text, same record. Same tables as before the seam
 * (`images`, `image-names`), so existing data directories keep working.
 */
export class LevelRecords implements RecordBackend {
  readonly kind = 'level'
  readonly shared = false
  private readonly lock = createKeyedLock()
  private readonly images: Table<ImageRecord>
  private readonly names: Table<{ last: number; claim?: string }>

  constructor(private readonly db: Db) {
    this.images = db.table<ImageRecord>('images')
    this.names = db.table<{ last: number; claim?: string }>('image-names')
  }

  async get(id: string): Promise<Versioned | undefined> {
    const v = await this.images.get(id)
    return v === undefined ? undefined : { value: normalizeRecord(v, id), rev: JSON.stringify(v) }
  }

  async list(): Promise<Versioned[]> {
    return (await this.images.entries()).map(([id, v]) => ({ value: normalizeRecord(v, id), rev: JSON.stringify(v) }))
  }

  put(id: string, rec: ImageRecord, expectedRev: Rev | undefined): Promise<boolean> {
    return this.lock.run(id, async () => {
      const cur = await this.images.get(id)
      if ((cur === undefined ? undefined : JSON.stringify(cur)) !== expectedRev) return false
      await this.images.put(id, rec)
      return true
    })
  }

  del(id: string, expectedRev: Rev): Promise<boolean> {
    return this.lock.run(id, async () => {
      const cur = await this.images.get(id)
      if (cur === undefined || JSON.stringify(cur) !== expectedRev) return false
      await this.images.del(id)
      return true
    })
  }

  nextVersion(name: string): Promise<number> {
    return this.lock.run(`name:${name}`, async () => {
      const next = ((await this.names.get(name))?.last ?? 0) + 1
      await this.names.put(name, { last: next })
      return next
    })
  }

  claimVersion(name: string, n: number, claim: string): Promise<boolean> {
    return this.lock.run(`name:${name}`, async () => {
      const cur = await this.names.get(name)
      if (cur?.last === n && cur.claim === claim) return true
      if ((cur?.last ?? 0) >= n) return false
      await this.names.put(name, { last: n, claim })
      return true
    })
  }

  /** Ownership is the process: its transfers live exactly as long as it does (recover() at start-up). */
  async claimTransfer(_id: string): Promise<TransferClaim> {
    return { signal: NO_SIGNAL, release: async () => {} }
  }

  /** Every transfer a level store has is this live process's own. */
  async putIfUnowned(_id: string, _rec: ImageRecord, _expectedRev: Rev): Promise<boolean> {
    return false
  }

  async health(): Promise<void> {
    await this.images.get('health-check')
  }

  close(): Promise<void> {
    return this.db.close()
  }
}
