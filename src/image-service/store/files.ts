/**
 * The blob seam: `<dataDir>/images/<id>`, written via `<dataDir>/tmp/` + fsync + rename, so no
 * image name ever holds a truncated file; digests are computed as the bytes stream past.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { isImageId } from './store.js'

export interface StoredData {
  size: number
  sha256: string
  md5: string
  sha512: string
}

/** Bytes stored in a temporary file, waiting for `commit` (rename into place) or `discard`. */
export interface Staged {
  data: StoredData
  commit(): Promise<void>
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

export class ImageFiles {
  readonly imagesDir: string
  readonly tmpDir: string

  constructor(dataDir: string) {
    this.imagesDir = join(dataDir, 'images')
    this.tmpDir = join(dataDir, 'tmp')
  }

  /** Create the directories and drop partial files a previous run left behind. */
  async init(): Promise<void> {
    await mkdir(this.imagesDir, { recursive: true, mode: 0o750 })
    await mkdir(this.tmpDir, { recursive: true, mode: 0o750 })
    for (const f of await readdir(this.tmpDir)) await rm(join(this.tmpDir, f), { force: true, recursive: true })
  }

  /** The id is checked before it becomes part of a path: no `..`, no `/`, no empty id. */
  pathOf(id: string): string {
    if (!isImageId(id)) throw new InvalidIdError(id)
    return join(this.imagesDir, id.toLowerCase())
  }

  /** Store the bytes and put them in place under the id's name. */
  async write(id: string, body: AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<StoredData> {
    const staged = await this.stage(id, body, o)
    await staged.commit()
    return staged.data
  }

  /**
   * Store the bytes in a temporary file, complete and fsynced, but not yet
   * under the id's name: the caller decides whether to `commit` (rename into
   * place) or `discard` it, e.g. only while the record is still the one the
   * upload started against.
   */
  async stage(id: string, body: AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<Staged> {
    const final = this.pathOf(id)
    const tmp = join(this.tmpDir, `${id.toLowerCase()}.${randomBytes(6).toString('hex')}.part`)
    const hashes = { sha256: createHash('sha256'), md5: createHash('md5'), sha512: createHash('sha512') }
    const fh = await open(tmp, 'wx', 0o644)
    let closed = false
    let size = 0
    try {
      for await (const chunk of body) {
        o.signal?.throwIfAborted()
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        size += buf.length
        if (o.maxSize !== undefined && size > o.maxSize) throw new TooLargeError(o.maxSize)
        hashes.sha256.update(buf)
        hashes.md5.update(buf)
        hashes.sha512.update(buf)
        await writeAll(fh, buf)
        o.onProgress?.(size)
      }
      o.signal?.throwIfAborted()
      if (o.isComplete && !o.isComplete()) throw new IncompleteError('upload ended before all data arrived')
      if (o.expectedSize !== undefined && o.expectedSize >= 0 && size !== o.expectedSize) {
        throw new IncompleteError(`received ${size} bytes, expected ${o.expectedSize}`)
      }
      await fh.sync()
      closed = true
      await fh.close()
      const data = { size, sha256: hashes.sha256.digest('hex'), md5: hashes.md5.digest('hex'), sha512: hashes.sha512.digest('hex') }
      return {
        data,
        commit: async () => {
          await rename(tmp, final)
          await syncDir(this.imagesDir)
        },
        discard: () => rm(tmp, { force: true }),
      }
    } catch (err) {
      if (!closed) await fh.close().catch(() => {})
      await rm(tmp, { force: true })
      throw err
    }
  }

  /** Open the stored data for reading; undefined when there is no file. */
  async open(id: string): Promise<{ handle: FileHandle; size: number } | undefined> {
    try {
      const handle = await open(this.pathOf(id), 'r')
      try {
        return { handle, size: (await handle.stat()).size }
      } catch (err) {
        await handle.close()
        throw err
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /** Remove an image's data; a missing file is fine. */
  async remove(id: string): Promise<void> {
    await rm(this.pathOf(id), { force: true })
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off)
    off += bytesWritten
  }
}

/** Make the rename itself durable. */
async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}
