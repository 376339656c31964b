/**
 * The blob seam: where an image's bytes live (a local directory, files.ts; or an S3 bucket,
 * s3-blobs.ts). Bytes are staged out of sight, then made visible under the image's id only by
 * `commit`, once the whole body arrived and its size and digests are known.
 */
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { isImageId, type ImageRecord } from './store.js'

export interface StoredData {
  size: number
  sha256: string
  md5: string
  sha512: string
  /** What agents verify a download by when it is published (SHA-256's work for a fraction of the CPU, see README). */
  blake2b512: string
}

/** Bytes stored out of sight, waiting for `commit` (made visible under the id) or `discard`. */
export interface Staged {
  data: StoredData
  /**
   * Make the bytes visible under the staged key, or under `as` (a key known only once the
   * digests are: an increment's, see incrementKey).
   */
  commit(as?: string): Promise<void>
  discard(): Promise<void>
}

export interface WriteOptions {
  /** Fail with TooLargeError once more than this many bytes arrive. */
  maxSize?: number
  /** Bytes the sender announced (-1 = unknown); a different count fails with IncompleteError. */
  expectedSize?: number
  /** Called after every chunk with the bytes written so far. */
  onProgress?: (size: number) => void
  /** Checked at the end: false means the sender went away (e.g. a client abort). */
  isComplete?: () => boolean
  signal?: AbortSignal
}

/** A visible blob, opened: its size is known before any status is sent. */
export interface OpenedBlob {
  size: number
  /**
   * Bytes start..end (inclusive). Resolves once the store answered, so a blob that vanished
   * since `open` is still an error before the status; the stream owns the blob from then on.
   */
  stream(start: number, end: number): Promise<Readable>
  /** Release the blob when `stream` is not called (HEAD, 304, 416); harmless after it. */
  close(): Promise<void>
}

export interface BlobStore {
  /** Where the bytes live, for logs (never credentials). */
  readonly where: string
  /**
   * Prepare the store (directories, bucket) and drop leftovers of interrupted
   * writes; `shared` (replicas over one store): only leftovers too old to be
   * another replica's write in progress.
   */
  init(o?: { shared?: boolean }): Promise<void>
  stage(id: string, body: AsyncIterable<Uint8Array>, o?: WriteOptions): Promise<Staged>
  /** undefined when no blob is visible under the id. */
  open(id: string): Promise<OpenedBlob | undefined>
  exists(id: string): Promise<boolean>
  /** Remove the visible blob; a missing one is fine. */
  remove(id: string): Promise<void>
  /** Throws when the store cannot be reached or used. */
  health(): Promise<void>
  /** Release connections (service shutdown). */
  close?(): void
}

/**
 * An image's increment is a second blob beside its full one. Its key carries the increment's
 * digest: two replicas storing increments for one image at once never overwrite each other's
 * bytes (equal keys are equal bytes), and the record says which key is the live one.
 */
export function incrementKey(id: string, sha256: string): string {
  return `${id.toLowerCase()}.increment.${sha256}`
}

const INCREMENT_SUFFIX = /^\.increment\.[0-9a-f]{64}$/

/** Keys become file names and object keys: an image id, or an image id's increment key; nothing else. */
export function isBlobKey(key: string): boolean {
  return isImageId(key.slice(0, 36)) && (key.length === 36 || INCREMENT_SUFFIX.test(key.slice(36)))
}

/** Every blob of a deleted image: its bytes and its increment's. */
export async function removeImageBlobs(blobs: BlobStore, rec: ImageRecord): Promise<void> {
  await blobs.remove(rec.id)
  if (rec.increment) await blobs.remove(incrementKey(rec.id, rec.increment.sha256))
}

export class TooLargeError extends Error {
  override name = 'TooLargeError'
  constructor(readonly limit: number) {
    super(`image exceeds the maximum size of ${limit} bytes`)
  }
}

export class IncompleteError extends Error {
  override name = 'IncompleteError'
}

export class InvalidIdError extends Error {
  override name = 'InvalidIdError'
  constructor(id: string) {
    super(`invalid image id ${JSON.stringify(id)}`)
  }
}

/** The store itself failed (unreachable, refused): not the sender's fault; a 503 to clients. */
export class BlobStoreError extends Error {
  override name = 'BlobStoreError'
}

/** Stage and commit at once (no metadata to check in between). */
export async function writeBlob(blobs: BlobStore, id: string, body: AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<StoredData> {
  const staged = await blobs.stage(id, body, o)
  await staged.commit()
  return staged.data
}

/**
 * The checks and digests every store applies while bytes stream past: `pass` yields the body's
 * chunks as Buffers (hashing, counting, enforcing maxSize and the signal); `finish` runs the
 * end-of-body checks and returns size and digests.
 */
export class Meter {
  private readonly sha256 = createHash('sha256')
  private readonly md5 = createHash('md5')
  private readonly sha512 = createHash('sha512')
  private readonly blake2b512 = createHash('blake2b512')
  size = 0
  /** Why the body failed (the sender, a limit, the signal), as opposed to the store. */
  failed: unknown

  constructor(private readonly o: WriteOptions) {}

  async *pass(body: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
    const it = body[Symbol.asyncIterator]()
    let done = false
    try {
      for (;;) {
        let buf: Buffer
        // Only what fails while reading the body or checking it is the body's failure; an error
        // thrown in at the yield (the consumer, e.g. the store, gave up) is not.
        let r: IteratorResult<Uint8Array>
        try {
          r = await it.next()
        } catch (err) {
          done = true
          this.failed ??= err
          throw err
        }
        if (r.done === true) { done = true; return }
        try {
          buf = this.take(r.value)
        } catch (err) {
          this.failed ??= err
          throw err
        }
        yield buf
        this.o.onProgress?.(this.size)
      }
    } finally {
      // Stopped early (a check failed, or the consumer gave up): let the body release what it
      // holds, as for-await would.
      if (!done) await it.return?.()
    }
  }

  private take(chunk: Uint8Array): Buffer {
    this.o.signal?.throwIfAborted()
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    this.size += buf.length
    if (this.o.maxSize !== undefined && this.size > this.o.maxSize) throw new TooLargeError(this.o.maxSize)
    this.sha256.update(buf)
    this.md5.update(buf)
    this.sha512.update(buf)
    this.blake2b512.update(buf)
    return buf
  }

  finish(): StoredData {
    try {
      return this.checkedEnd()
    } catch (err) {
      this.failed ??= err
      throw err
    }
  }

  private checkedEnd(): StoredData {
    this.o.signal?.throwIfAborted()
    if (this.o.isComplete && !this.o.isComplete()) throw new IncompleteError('upload ended before all data arrived')
    if (this.o.expectedSize !== undefined && this.o.expectedSize >= 0 && this.size !== this.o.expectedSize) {
      throw new IncompleteError(`received ${this.size} bytes, expected ${this.o.expectedSize}`)
    }
    return { size: this.size, sha256: this.sha256.digest('hex'), md5: this.md5.digest('hex'), sha512: this.sha512.digest('hex'), blake2b512: this.blake2b512.digest('hex') }
  }
}
