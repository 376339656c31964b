/**
 * The one path by which bytes become an image (native upload, Glance upload, URL fetch): the record
 * ends `complete` with size and digests, or `error` with the reason and no file, never half-written.
 */
import type { Logger } from '../../common/log.js'
import type { BlobStore, Staged, WriteOptions } from './blobs.js'
import { ZERO_TIME, type ImageRecord, type ImageStore } from './store.js'

export interface IngestDeps {
  store: ImageStore
  blobs: BlobStore
  log: Logger
}

export interface IngestOptions extends Omit<WriteOptions, 'onProgress'> {
  /** Persist the running `size` at most this often (0 = only at the end). */
  progressIntervalMs?: number
  /**
   * The record generation this upload belongs to (taken when it claimed the
   * record); default: the record's generation when ingest starts.
   */
  generation?: string | undefined
}

/** The record vanished (deleted) while its data was arriving. */
export class ImageGoneError extends Error {
  override name = 'ImageGoneError'
  constructor(id: string) {
    super(`image ${id} was deleted`)
  }
}

/**
 * The image was deleted and created again (same id) while this upload ran:
 * the record now belongs to someone else, and this upload's data was dropped.
 */
export class StaleUploadError extends Error {
  override name = 'StaleUploadError'
  constructor(id: string) {
    super(`image ${id} was deleted and created again during this upload; this upload's data was discarded`)
  }
}

export function withError(r: ImageRecord, message: string): ImageRecord {
  return { ...r, status: 'error', error: message, download_end: new Date().toISOString(), sha256: '', md5: '', sha512: '' }
}

/** Back to `pending` with no trace of an earlier attempt (a fetch about to (re)start). */
export function asPending(r: ImageRecord): ImageRecord {
  return { ...clearError(r), status: 'pending', size: 0, expected_size: -1, download_start: ZERO_TIME, download_end: ZERO_TIME, sha256: '', md5: '', sha512: '' }
}

function clearError(r: ImageRecord): ImageRecord {
  const { error: _error, ...rest } = r
  return rest
}

/**
 * Returns the complete record; throws (after recording the error) when the
 * data could not be stored. Every write to the record, the final one
 * included, happens only while the record still has the generation this
 * upload started against, and the file is renamed into place under the
 * record's lock in that same step: a stale upload can neither overwrite a
 * re-created image's bytes nor mark its record.
 */
export async function ingest(deps: IngestDeps, id: string, body: AsyncIterable<Uint8Array>, o: IngestOptions = {}): Promise<ImageRecord> {
  const { generation: claimed, ...writeOptions } = o
  let gen = claimed
  let stale = false
  const started = await deps.store.update(id, (r) => {
    if (claimed !== undefined && r.generation !== claimed) { stale = true; return undefined }
    gen = r.generation
    return {
      ...clearError(r), status: 'downloading', size: 0, expected_size: o.expectedSize ?? -1,
      download_start: new Date().toISOString(), download_end: ZERO_TIME, sha256: '', md5: '', sha512: '',
    }
  })
  if (!started) throw new ImageGoneError(id)
  if (stale) throw new StaleUploadError(id)
  const ours = (r: ImageRecord) => r.generation === gen

  // A timer, not the chunks, drives the updates: a source that stalls after
  // a few bytes still shows how far it got.
  let size = 0
  let saved = 0
  const interval = o.progressIntervalMs ?? 0
  const timer = interval > 0 ? setInterval(() => {
    if (size === saved) return
    saved = size
    const now = size
    deps.store.update(id, (r) => (r.status === 'downloading' && ours(r) ? { ...r, size: now } : undefined))
      .catch((err: unknown) => deps.log.warn({ id, err: String(err) }, 'progress update failed'))
  }, interval) : undefined

  let staged: Staged
  try {
    staged = await deps.blobs.stage(id, body, { ...writeOptions, onProgress: (n) => { size = n } })
  } catch (err) {
    // Node reports a sender that hung up as a bare "aborted".
    const raw = err instanceof Error ? err.message : String(err)
    const message = raw === 'aborted' ? 'connection closed before all data arrived' : raw
    await deps.store.update(id, (r) => (ours(r) ? withError(r, message) : undefined)).catch(() => {})
    throw err
  } finally {
    clearInterval(timer)
  }

  let committed = false
  let done: ImageRecord | undefined
  try {
    done = await deps.store.update(id, async (r) => {
      if (!ours(r)) return undefined
      await staged.commit()
      committed = true
      return { ...clearError(r), status: 'complete', ...staged.data, download_end: new Date().toISOString() }
    })
  } catch (err) {
    await staged.discard()
    const message = err instanceof Error ? err.message : String(err)
    await deps.store.update(id, (r) => (ours(r) ? withError(r, message) : undefined)).catch(() => {})
    throw err
  }
  if (!committed || !done) {
    await staged.discard()
    throw done ? new StaleUploadError(id) : new ImageGoneError(id)
  }
  return done
}
