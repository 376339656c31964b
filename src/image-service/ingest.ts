/**
 * The one path by which image bytes become a complete image, shared by the
 * native upload, the Glance upload and the URL fetcher: record goes to
 * `downloading`, bytes go to disk (files.ts), and the record ends as
 * `complete` with size and digests, or as `error` with the reason and no file.
 * A partial upload therefore can never be seen as complete.
 */
import type { ImageFiles, StoredData, WriteOptions } from './files.js'
import type { Logger } from './log.js'
import { ZERO_TIME, type ImageRecord, type ImageStore } from './store.js'

export interface IngestDeps {
  store: ImageStore
  files: ImageFiles
  log: Logger
}

export interface IngestOptions extends Omit<WriteOptions, 'onProgress'> {
  /** Persist the running `size` at most this often (0 = only at the end). */
  progressIntervalMs?: number
}

/** The record vanished (deleted) while its data was arriving. */
export class ImageGoneError extends Error {
  override name = 'ImageGoneError'
  constructor(id: string) {
    super(`image ${id} was deleted`)
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

/** Returns the complete record; throws (after recording the error) when the data could not be stored. */
export async function ingest(deps: IngestDeps, id: string, body: AsyncIterable<Uint8Array>, o: IngestOptions = {}): Promise<ImageRecord> {
  const started = await deps.store.update(id, (r) => ({
    ...clearError(r), status: 'downloading', size: 0, expected_size: o.expectedSize ?? -1,
    download_start: new Date().toISOString(), download_end: ZERO_TIME, sha256: '', md5: '', sha512: '',
  }))
  if (!started) throw new ImageGoneError(id)

  // A timer, not the chunks, drives the updates: a source that stalls after
  // a few bytes still shows how far it got.
  let size = 0
  let saved = 0
  const interval = o.progressIntervalMs ?? 0
  const timer = interval > 0 ? setInterval(() => {
    if (size === saved) return
    saved = size
    const now = size
    deps.store.update(id, (r) => (r.status === 'downloading' ? { ...r, size: now } : undefined))
      .catch((err: unknown) => deps.log.warn('progress update failed', { id, err: String(err) }))
  }, interval) : undefined

  let data: StoredData
  try {
    data = await deps.files.write(id, body, { ...o, onProgress: (n) => { size = n } })
  } catch (err) {
    // Node reports a sender that hung up as a bare "aborted".
    const raw = err instanceof Error ? err.message : String(err)
    const message = raw === 'aborted' ? 'connection closed before all data arrived' : raw
    await deps.store.update(id, (r) => withError(r, message)).catch(() => {})
    throw err
  } finally {
    clearInterval(timer)
  }

  const done = await deps.store.update(id, (r) => ({
    ...clearError(r), status: 'complete', ...data, download_end: new Date().toISOString(),
  }))
  if (!done) {
    // Deleted while we were writing: the rename may have put the file back.
    await deps.files.remove(id)
    throw new ImageGoneError(id)
  }
  return done
}
