/**
 * The metadata seam: one record per image, shared by both APIs, over a
 * RecordBackend (records.ts: level by default, or etcd shared by replicas).
 * Every write is a compare-and-swap, so writers on several replicas never
 * lose each other's updates; an in-process lock keeps one replica's own
 * writers from conflicting.
 */
import { randomUUID } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import type { Db } from '../../common/db.js'
import { createKeyedLock } from '../../common/keyed-lock.js'
import { LevelRecords, MetadataUnavailableError, RetryableError, type RecordBackend, type TransferClaim } from './records.js'

export type ImageType = 'kvm' | 'container'
export const IMAGE_TYPES: readonly ImageType[] = ['kvm', 'container']
export type ImageStatus = 'pending' | 'downloading' | 'complete' | 'error'
export type Visibility = 'public' | 'private' | 'shared' | 'community'

/** Go's zero time.Time as the original service serialises it. */
export const ZERO_TIME = '0001-01-01T00:00:00Z'

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Ids become file names: only canonical UUIDs are ever accepted. */
export function isImageId(id: string): boolean {
  return UUID_RE.test(id)
}

export function isImageType(t: unknown): t is ImageType {
  return t === 'kvm' || t === 'container'
}

/** Names are free text (shared by both APIs) but bounded and without control characters. */
export function validName(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return s.length >= 1 && s.length <= 255 && !/[\u0000-\u001f\u007f]/.test(s)
}

/** Fields only the Glance API shows; kept on every record so both views agree. */
export interface GlanceFields {
  visibility: Visibility
  protected: boolean
  disk_format: string | null
  container_format: string | null
  min_disk: number
  min_ram: number
  tags: string[]
  owner: string | null
  os_hidden: boolean
  /** Glance custom (additional) properties; values are strings as in Glance's schema. */
  properties: Record<string, string>
}

/** A `zfs send -i` stream stored beside an image's full stream: from its origin's snapshot to this image's. */
export interface Increment {
  /** Decimal guid of the origin's snapshot (the stream's fromguid). */
  from_guid: string
  size: number
  sha256: string
  /** Absent on increments stored before it was published. */
  blake2b512?: string
}

export interface ImageRecord {
  id: string
  /** URL the data was fetched from ('' for uploads). */
  source: string
  type: ImageType
  comment: string
  status: ImageStatus
  size: number
  expected_size: number
  download_start: string
  download_end: string
  /** Hex digests of the stored bytes ('' until complete). */
  sha256: string
  md5: string
  sha512: string
  blake2b512: string
  /** '' when unnamed; version 0 then. */
  name: string
  version: number
  error?: string
  created_at: string
  updated_at: string
  glance: GlanceFields
  /**
   * New on every create: an upload started against one incarnation of an id
   * must not complete a record deleted and re-created under the same id
   * since. Absent on records written before generations existed.
   */
  generation?: string
  /**
   * Decimal guid of the snapshot the stored bytes carry when they are a plain
   * full zfs send stream (the BEGIN record's toguid); '' for anything else.
   */
  snapshot_guid: string
  /** Id of the image this one has an increment from; '' when none. */
  origin: string
  increment: Increment | null
}

export interface NewImage {
  id?: string
  source?: string
  type: ImageType
  comment?: string
  name?: string
  /** A version the publisher chose (with a name): refused with VersionTakenError when the name has had it. */
  version?: number
  glance?: Partial<GlanceFields>
}

export class ImageExistsError extends Error {
  override name = 'ImageExistsError'
  constructor(id: string) {
    super(`image ${id} already exists`)
  }
}

export class VersionTakenError extends Error {
  override name = 'VersionTakenError'
  constructor(name: string, version: number) {
    super(`image name ${JSON.stringify(name)} already has (or had) version ${version}; versions are never reused`)
  }
}

/** Native images default to these Glance formats (glance/view.ts maps them back to a type). */
export function defaultFormats(type: ImageType): { disk_format: string; container_format: string } {
  return { disk_format: 'raw', container_format: type === 'container' ? 'docker' : 'bare' }
}

export interface ImageStoreOptions {
  /** How long to keep retrying while the backend is unavailable before a MetadataUnavailableError (ms). Default 10 s. */
  retryBudgetMs?: number
}

export class ImageStore {
  /** In-process only: saves same-replica writers from conflicting with each other; the backend's CAS is what makes writes safe. */
  private readonly lock = createKeyedLock()
  private readonly retryBudgetMs: number

  constructor(readonly backend: RecordBackend, o: ImageStoreOptions = {}) {
    this.retryBudgetMs = o.retryBudgetMs ?? 10_000
  }

  static fromDb(db: Db, o: ImageStoreOptions = {}): ImageStore {
    return new ImageStore(new LevelRecords(db), o)
  }

  async get(id: string): Promise<ImageRecord | undefined> {
    if (!isImageId(id)) return undefined
    return (await this.retrying(() => this.backend.get(id.toLowerCase())))?.value
  }

  /** All records, oldest first (ties broken by id, so the order is total). */
  async list(): Promise<ImageRecord[]> {
    const all = (await this.retrying(() => this.backend.list())).map((v) => v.value)
    return all.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  async create(init: NewImage): Promise<ImageRecord> {
    const id = (init.id ?? randomUUID()).toLowerCase()
    if (!isImageId(id)) throw new Error(`invalid image id ${id}`)
    return this.lock.run(id, async () => {
      if (await this.retrying(() => this.backend.get(id))) throw new ImageExistsError(id)
      const now = new Date().toISOString()
      const name = init.name ?? ''
      if (init.version !== undefined && name === '') throw new Error('a version needs a name')
      const rec: ImageRecord = {
        id,
        source: init.source ?? '',
        type: init.type,
        comment: init.comment ?? '',
        status: 'pending',
        size: 0,
        expected_size: -1,
        download_start: ZERO_TIME,
        download_end: ZERO_TIME,
        sha256: '',
        md5: '',
        sha512: '',
        blake2b512: '',
        name,
        version: name === '' ? 0 : await this.versionFor(name, init.version),
        created_at: now,
        updated_at: now,
        generation: randomUUID(),
        snapshot_guid: '',
        origin: '',
        increment: null,
        glance: {
          visibility: 'shared',
          protected: false,
          ...defaultFormats(init.type),
          min_disk: 0,
          min_ram: 0,
          tags: [],
          owner: null,
          os_hidden: false,
          properties: {},
          ...init.glance,
        },
      }
      await this.retrying(async () => {
        if (await this.backend.put(id, rec, undefined)) return
        // Lost to another creator, or our own write timed out after it happened: the generation tells.
        if ((await this.backend.get(id))?.value.generation !== rec.generation) throw new ImageExistsError(id)
      })
      return rec
    })
  }

  /**
   * Read-modify-write one record: `fn` gets a copy and returns the new record
   * (or undefined to leave it alone), written only if nobody (no other
   * replica) wrote the record meanwhile; otherwise `fn` runs again on the
   * newer record, so it may run more than once and must not repeat side
   * effects. A name change allocates the next version for the new name.
   * Resolves undefined when the record is gone.
   */
  async update(id: string, fn: (rec: ImageRecord) => ImageRecord | undefined | Promise<ImageRecord | undefined>): Promise<ImageRecord | undefined> {
    if (!isImageId(id)) return undefined
    const key = id.toLowerCase()
    // A version allocated for a new name is kept across retries: numbers are not wasted per conflict.
    const versions = new Map<string, number>()
    return this.lock.run(key, () => this.casLoop(async () => {
      const cur = await this.backend.get(key)
      if (!cur) return { done: undefined }
      const next = await fn(structuredClone(cur.value))
      if (!next) return { done: cur.value }
      if (next.name !== cur.value.name) {
        let v = next.name === '' ? 0 : versions.get(next.name)
        if (v === undefined) versions.set(next.name, v = await this.backend.nextVersion(next.name))
        next.version = v
      }
      next.id = key
      next.updated_at = new Date().toISOString()
      return { write: () => this.backend.put(key, next, cur.rev), check: async () => sameRecord((await this.backend.get(key))?.value, next), done: next }
    }))
  }

  /**
   * Delete and return the record (undefined when there was none; deleting
   * twice is fine). `andThen` runs under the record's in-process lock after the
   * delete (removing the data file there means a re-created image's new file
   * can never be removed by an older delete of this replica); it gets the
   * record as it was deleted, which may be newer than the caller's copy (an
   * increment linked meanwhile).
   */
  async remove(id: string, andThen?: (gone: ImageRecord | undefined) => Promise<void>): Promise<ImageRecord | undefined> {
    if (!isImageId(id)) return undefined
    const key = id.toLowerCase()
    return this.lock.run(key, async () => {
      const gone = await this.casLoop(async () => {
        const cur = await this.backend.get(key)
        if (!cur) return { done: undefined }
        return { write: () => this.backend.del(key, cur.rev), check: async () => (await this.backend.get(key)) === undefined, done: cur.value }
      })
      await andThen?.(gone)
      return gone
    })
  }

  /**
   * Start a transfer (upload, URL fetch) of `id` as this replica's: other
   * replicas leave it alone while the claim lives. The claim's signal aborts
   * when this replica lost it; release() when the transfer has ended.
   */
  claimTransfer(id: string): Promise<TransferClaim> {
    return this.retrying(() => this.backend.claimTransfer(id.toLowerCase()))
  }

  /**
   * Records whose transfer no live replica owns (it died): `downloading`
   * ones, and URL fetches still `pending` after `pendingGraceMs` (a fetcher
   * claims its record as it starts); `mark` (e.g. as error) unless a replica
   * claims it meanwhile. Nothing with an unshared backend, where this process
   * owns every transfer. Returns the ids marked.
   */
  async sweepOrphans(mark: (rec: ImageRecord) => ImageRecord, pendingGraceMs = 30_000): Promise<string[]> {
    if (!this.backend.shared) return []
    const marked: string[] = []
    const staleBefore = new Date(Date.now() - pendingGraceMs).toISOString()
    for (const { value, rev } of await this.retrying(() => this.backend.list())) {
      const stalledFetch = value.status === 'pending' && value.source !== '' && value.updated_at < staleBefore
      if (value.status !== 'downloading' && !stalledFetch) continue
      const next = { ...mark(structuredClone(value)), id: value.id, updated_at: new Date().toISOString() }
      // A conflict means someone wrote the record since: it is not orphaned, or the next sweep sees it again.
      if (await this.retrying(() => this.backend.putIfUnowned(value.id, next, rev))) marked.push(value.id)
    }
    return marked
  }

  /** Ids of the records that name `id` as their origin, sorted. */
  async dependents(id: string): Promise<string[]> {
    const key = id.toLowerCase()
    return (await this.list()).filter((r) => r.origin === key).map((r) => r.id).sort()
  }

  /** An explicit version is claimed on the name's counter (atomic across replicas); else the next one. */
  private async versionFor(name: string, wanted: number | undefined): Promise<number> {
    if (wanted === undefined) return this.retrying(() => this.backend.nextVersion(name))
    const claim = randomUUID()
    if (!(await this.retrying(() => this.backend.claimVersion(name, wanted, claim)))) throw new VersionTakenError(name, wanted)
    return wanted
  }

  async findBySource(source: string): Promise<ImageRecord | undefined> {
    if (source === '') return undefined
    return (await this.list()).find((r) => r.source === source)
  }

  /** Every version of a name, oldest first. */
  async versions(name: string): Promise<ImageRecord[]> {
    return (await this.list()).filter((r) => r.name === name && name !== '').sort((a, b) => a.version - b.version)
  }

  /** The newest complete version of a name. */
  async latest(name: string): Promise<ImageRecord | undefined> {
    const done = (await this.versions(name)).filter((r) => r.status === 'complete')
    return done[done.length - 1]
  }

  /**
   * Compare-and-swap until a write lands. `step` reads and decides: either
   * `done` alone (nothing to write) or a `write` that may conflict (false),
   * and a `check` telling whether a write that failed or timed out landed
   * after all (a timed-out etcd commit may have happened).
   */
  private casLoop<T>(step: () => Promise<{ done: T; write?: () => Promise<boolean>; check?: () => Promise<boolean> }>): Promise<T> {
    return this.retrying(async () => {
      for (;;) {
        const s = await step()
        if (!s.write) return s.done
        let ok: boolean
        try {
          ok = await s.write()
        } catch (err) {
          if (!(err instanceof RetryableError)) throw err
          if (await s.check?.().catch(() => false)) return s.done
          throw err
        }
        if (ok || (await s.check?.())) return s.done
      }
    })
  }

  /** Run `fn` again while the backend is unavailable, with backoff, for up to the retry budget. */
  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    const until = Date.now() + this.retryBudgetMs
    for (let delay = 50; ; delay = Math.min(delay * 2, 1_000)) {
      try {
        return await fn()
      } catch (err) {
        if (!(err instanceof MetadataUnavailableError) || Date.now() + delay > until) throw err
        await new Promise((r) => setTimeout(r, delay))
      }
    }
  }
}

/** Equal as stored (JSON): how a writer recognises its own write. */
function sameRecord(stored: ImageRecord | undefined, mine: ImageRecord): boolean {
  return stored !== undefined && isDeepStrictEqual(stored, JSON.parse(JSON.stringify(mine)))
}
