/**
 * The directory blob store (the default): `<dataDir>/images/<id>`, written via `<dataDir>/tmp/` +
 * fsync + rename, so no image name ever holds a truncated file; digests are computed as the bytes
 * stream past.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidIdError, isBlobKey, Meter, writeBlob, type BlobStore, type OpenedBlob, type Staged, type StoredData, type WriteOptions } from './blobs.js'

export { IncompleteError, InvalidIdError, TooLargeError, type Staged, type StoredData, type WriteOptions } from './blobs.js'

export class ImageFiles implements BlobStore {
  readonly imagesDir: string
  readonly tmpDir: string

  constructor(dataDir: string) {
    this.imagesDir = join(dataDir, 'images')
    this.tmpDir = join(dataDir, 'tmp')
  }

  get where(): string {
    return `dir ${this.imagesDir}`
  }

  /**
   * Create the directories and drop partial files a previous run left behind.
   * Shared by replicas (`shared`), a younger partial file may be another
   * replica's upload in progress: only those untouched for an hour go.
   */
  async init(o: { shared?: boolean } = {}): Promise<void> {
    await mkdir(this.imagesDir, { recursive: true, mode: 0o750 })
    await mkdir(this.tmpDir, { recursive: true, mode: 0o750 })
    const cutoff = Date.now() - 3600_000
    for (const f of await readdir(this.tmpDir)) {
      const path = join(this.tmpDir, f)
      if (o.shared) {
        const st = await stat(path).catch(() => undefined)
        if (st && st.mtimeMs >= cutoff) continue
      }
      await rm(path, { force: true, recursive: true })
    }
  }

  /** The key (an id, or an increment's key) is checked before it becomes part of a path: no `..`, no `/`, no empty id. */
  pathOf(id: string): string {
    if (!isBlobKey(id)) throw new InvalidIdError(id)
    return join(this.imagesDir, id.toLowerCase())
  }

  /** Store the bytes and put them in place under the id's name. */
  write(id: string, body: AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<StoredData> {
    return writeBlob(this, id, body, o)
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
    const meter = new Meter(o)
    const fh = await open(tmp, 'wx', 0o644)
    let closed = false
    try {
      for await (const buf of meter.pass(body)) await writeAll(fh, buf)
      const data = meter.finish()
      await fh.sync()
      closed = true
      await fh.close()
      return {
        data,
        commit: async (as) => {
          await rename(tmp, as === undefined ? final : this.pathOf(as))
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
  async open(id: string): Promise<OpenedBlob | undefined> {
    let handle: FileHandle
    try {
      handle = await open(this.pathOf(id), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    let size: number
    try {
      size = (await handle.stat()).size
    } catch (err) {
      await handle.close()
      throw err
    }
    // The read stream closes the handle itself (autoClose) once it ends or is destroyed.
    let owned = false
    return {
      size,
      stream: async (start, end) => {
        owned = true
        return handle.createReadStream({ start, end })
      },
      close: async () => {
        if (owned) return
        owned = true
        await handle.close()
      },
    }
  }

  async exists(id: string): Promise<boolean> {
    try {
      return (await stat(this.pathOf(id))).isFile()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
  }

  /** The directories are there and writable. */
  async health(): Promise<void> {
    const probe = join(this.tmpDir, `health.${randomBytes(6).toString('hex')}.part`)
    await (await open(probe, 'wx', 0o644)).close()
    await rm(probe, { force: true })
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
