/**
 * The metadata seam: one record per image, shared by both APIs, in the `images` table of common/db.ts.
 * Updates to a record are serialised (a fetch, an upload and API calls may touch it at once).
 */
import { randomUUID } from 'node:crypto'
import type { Db, Table } from '../../common/db.js'
import { createKeyedLock } from '../../common/keyed-lock.js'

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
}

export interface NewImage {
  id?: string
  source?: string
  type: ImageType
  comment?: string
  name?: string
  glance?: Partial<GlanceFields>
}

export class ImageExistsError extends Error {
  override name = 'ImageExistsError'
  constructor(id: string) {
    super(`image ${id} already exists`)
  }
}

/** Native images default to these Glance formats (glance/view.ts maps them back to a type). */
export function defaultFormats(type: ImageType): { disk_format: string; container_format: string } {
  return { disk_format: 'raw', container_format: type === 'container' ? 'docker' : 'bare' }
}

export class ImageStore {
  private readonly lock = createKeyedLock()

  constructor(
    private readonly images: Table<ImageRecord>,
    /** Per-name counters, so a deleted newest version's number is never reused. */
    private readonly names: Table<{ last: number }>,
  ) {}

  static fromDb(db: Db): ImageStore {
    return new ImageStore(db.table<ImageRecord>('images'), db.table<{ last: number }>('image-names'))
  }

  async get(id: string): Promise<ImageRecord | undefined> {
    if (!isImageId(id)) return undefined
    return this.images.get(id.toLowerCase())
  }

  /** All records, oldest first (ties broken by id, so the order is total). */
  async list(): Promise<ImageRecord[]> {
    const all = await this.images.values()
    return all.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  async create(init: NewImage): Promise<ImageRecord> {
    const id = (init.id ?? randomUUID()).toLowerCase()
    if (!isImageId(id)) throw new Error(`invalid image id ${id}`)
    return this.lock.run(id, async () => {
      if (await this.images.get(id)) throw new ImageExistsError(id)
      const now = new Date().toISOString()
      const name = init.name ?? ''
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
        name,
        version: name === '' ? 0 : await this.allocVersion(name),
        created_at: now,
        updated_at: now,
        generation: randomUUID(),
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
      await this.images.put(id, rec)
      return rec
    })
  }

  /**
   * Read-modify-write one record under its lock. `fn` gets a copy and returns
   * the new record (or undefined to leave it alone). A name change allocates
   * the next version for the new name. Resolves undefined when the record is gone.
   */
  async update(id: string, fn: (rec: ImageRecord) => ImageRecord | undefined | Promise<ImageRecord | undefined>): Promise<ImageRecord | undefined> {
    if (!isImageId(id)) return undefined
    const key = id.toLowerCase()
    return this.lock.run(key, async () => {
      const cur = await this.images.get(key)
      if (!cur) return undefined
      const next = await fn(structuredClone(cur))
      if (!next) return cur
      if (next.name !== cur.name) next.version = next.name === '' ? 0 : await this.allocVersion(next.name)
      next.id = key
      next.updated_at = new Date().toISOString()
      await this.images.put(key, next)
      return next
    })
  }

  /**
   * Delete and return the record (undefined when there was none; deleting
   * twice is fine). `andThen` runs under the record's lock after the delete
   * (removing the data file there means a re-created image's new file can
   * never be removed by an older delete).
   */
  async remove(id: string, andThen?: () => Promise<void>): Promise<ImageRecord | undefined> {
    if (!isImageId(id)) return undefined
    const key = id.toLowerCase()
    return this.lock.run(key, async () => {
      const cur = await this.images.get(key)
      if (cur) await this.images.del(key)
      await andThen?.()
      return cur
    })
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

  private allocVersion(name: string): Promise<number> {
    // A separate lock namespace so this can nest inside a record's lock.
    return this.lock.run(`name:${name}`, async () => {
      const last = (await this.names.get(name))?.last ?? 0
      const next = last + 1
      await this.names.put(name, { last: next })
      return next
    })
  }
}
