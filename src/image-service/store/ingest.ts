/**
 * The one path by which bytes become an image (native upload, Glance upload, URL fetch): the record
 * ends `complete` with size and digests, or `error` with the reason and no file, never half-written.
 */
import type { Logger } from '../../common/log.js'
import type { BlobStore, Staged, WriteOptions } from './blobs.js'
import { TransferLostError } from './records.js'
import { captureHead, snapshotGuidOf } from './stream-head.js'
import { DRR_BEGIN_BYTES } from '../../zfs/stream-header.js'
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
  return { ...r, status: 'error', error: message, download_end: new Date().toISOString(), sha256: '', md5: '', sha512: '', blake2b512: '', snapshot_guid: '' }
}

/** Back to `pending` with no trace of an earlier attempt (a fetch about to (re)start). */
export function asPending(r: ImageRecord): ImageRecord {
  return { ...clearError(r), status: 'pending', size: 0, expected_size: -1, download_start: ZERO_TIME, download_end: ZERO_TIME, sha256: '', md5: '', sha512: '', blake2b512: '', snapshot_guid: '' }
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
  const owner = await holdTransfer(deps, id)
  try {
    return await ingestClaimed(deps, id, body, writeOptions, claimed)
  } finally {
    await owner.release()
  }
}

/**
 * Claim the transfer (before the record says `downloading`: another
 * replica's sweep never sees it unowned) and claim it again when the claim is
 * lost (a lease that lapsed while etcd elected a leader): the transfer goes on,
 * and if a sweep marked the record meanwhile, the final write finds it no
 * longer `downloading` and fails with TransferLostError.
 */
async function holdTransfer(deps: IngestDeps, id: string): Promise<{ release(): Promise<void> }> {
  let current = await deps.store.claimTransfer(id)
  let ended = false
  const reclaim = (): void => {
    if (ended) return
    deps.log.warn({ id }, 'transfer claim lost; claiming it again')
    deps.store.claimTransfer(id).then(async (c) => {
      if (ended) return c.release()
      current = c
      c.signal.addEventListener('abort', reclaim, { once: true })
    }).catch((err: unknown) => deps.log.warn({ id, err: String(err) }, 'claiming the transfer again failed'))
  }
  current.signal.addEventListener('abort', reclaim, { once: true })
  return {
    release: async () => {
      ended = true
      await current.release().catch((err: unknown) => deps.log.warn({ id, err: String(err) }, 'releasing the transfer claim failed'))
    },
  }
}

async function ingestClaimed(deps: IngestDeps, id: string, body: AsyncIterable<Uint8Array>, writeOptions: Omit<IngestOptions, 'generation'>, claimed: string | undefined): Promise<ImageRecord> {
  const o = writeOptions
  let gen = claimed
  let stale = false
  const started = await deps.store.update(id, (r) => {
    if (claimed !== undefined && r.generation !== claimed) { stale = true; return undefined }
    gen = r.generation
    return {
      ...clearError(r), status: 'downloading', size: 0, expected_size: o.expectedSize ?? -1,
      download_start: new Date().toISOString(), download_end: ZERO_TIME, sha256: '', md5: '', sha512: '', blake2b512: '', snapshot_guid: '',
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

  // The first record tells whether the bytes are a plain full zfs stream, the base increments apply to.
  const head = captureHead(body, DRR_BEGIN_BYTES)
  let staged: Staged
  try {
    staged = await deps.blobs.stage(id, head.body, { ...writeOptions, onProgress: (n) => { size = n } })
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
      // Still ours and still running (not marked error by a sweep); a retried
      // update (conflict) must not rename twice.
      if (!ours(r) || r.status !== 'downloading') return undefined
      if (!committed) await staged.commit()
      committed = true
      return { ...clearError(r), status: 'complete', ...staged.data, snapshot_guid: snapshotGuidOf(head.head()), download_end: new Date().toISOString() }
    })
  } catch (err) {
    await staged.discard()
    const message = err instanceof Error ? err.message : String(err)
    await deps.store.update(id, (r) => (ours(r) ? withError(r, message) : undefined)).catch(() => {})
    throw err
  }
  if (!done || done.status !== 'complete' || !ours(done)) {
    if (!committed) await staged.discard()
    throw !done ? new ImageGoneError(id) : ours(done) ? new TransferLostError(id) : new StaleUploadError(id)
  }
  return done
}
