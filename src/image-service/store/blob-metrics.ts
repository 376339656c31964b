/**
 * Bytes read from and written to the blob store, per backend, as Prometheus counters on a
 * registry of the service's own (several services in one process must not share counters).
 * Read bytes are counted as they leave the store, so a cache in front of replicas shows up as
 * fewer origin bytes. Served on the native API at GET /metrics.
 */
import { Transform, pipeline, type Readable } from 'node:stream'
import { Counter, Registry } from 'prom-client'
import type { BlobStore, OpenedBlob, Staged, WriteOptions } from './blobs.js'

export class BlobMetrics {
  readonly registry = new Registry()
  readonly readBytes = new Counter({
    name: 'image_service_blob_read_bytes_total', help: 'Bytes read from the blob store (downloads).', labelNames: ['backend'] as const, registers: [this.registry],
  })
  readonly writtenBytes = new Counter({
    name: 'image_service_blob_written_bytes_total', help: 'Bytes of blobs committed to the blob store.', labelNames: ['backend'] as const, registers: [this.registry],
  })
}

/** `blobs` with every byte read or committed counted under `backend` ('dir', 's3'). */
export function meteredBlobs(blobs: BlobStore, metrics: BlobMetrics, backend: string): BlobStore {
  const read = metrics.readBytes.labels(backend)
  const written = metrics.writtenBytes.labels(backend)
  const counted = (src: Readable): Readable => {
    const t = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        read.inc(chunk.length)
        cb(null, chunk)
      },
    })
    // pipeline passes an error either way and destroys the other side.
    pipeline(src, t, () => {})
    return t
  }
  return {
    get where() { return blobs.where },
    init: (o) => blobs.init(o),
    stage: async (id: string, body: AsyncIterable<Uint8Array>, o?: WriteOptions): Promise<Staged> => {
      const staged = await blobs.stage(id, body, o)
      return {
        data: staged.data,
        commit: async () => {
          await staged.commit()
          written.inc(staged.data.size)
        },
        discard: () => staged.discard(),
      }
    },
    open: async (id: string): Promise<OpenedBlob | undefined> => {
      const b = await blobs.open(id)
      if (!b) return undefined
      return { size: b.size, stream: async (s, e) => counted(await b.stream(s, e)), close: () => b.close() }
    },
    exists: (id) => blobs.exists(id),
    remove: (id) => blobs.remove(id),
    health: () => blobs.health(),
    close: () => blobs.close?.(),
  }
}
