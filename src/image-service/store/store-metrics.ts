/**
 * The stores' work, per backend, as Prometheus counters on a registry of the service's own
 * (several services in one process must not share counters): bytes read from and written to
 * the blob store (read bytes counted as they leave the store, so a cache in front of replicas
 * shows up as fewer origin bytes), and metadata calls by outcome (conflicts are other
 * replicas' writes, errors an unreachable etcd). Served on the native API at GET /metrics.
 */
import { Transform, pipeline, type Readable } from 'node:stream'
import { Counter, Registry } from 'prom-client'
import type { BlobStore, OpenedBlob, Staged, WriteOptions } from './blobs.js'
import type { RecordBackend } from './records.js'

export class StoreMetrics {
  readonly registry = new Registry()
  readonly readBytes = new Counter({
    name: 'image_service_blob_read_bytes_total', help: 'Bytes read from the blob store (downloads).', labelNames: ['backend'] as const, registers: [this.registry],
  })
  readonly writtenBytes = new Counter({
    name: 'image_service_blob_written_bytes_total', help: 'Bytes of blobs committed to the blob store.', labelNames: ['backend'] as const, registers: [this.registry],
  })
  readonly metadataCalls = new Counter({
    name: 'image_service_metadata_calls_total', help: 'Calls to the metadata store by operation and outcome (ok, conflict, error).',
    labelNames: ['backend', 'op', 'result'] as const, registers: [this.registry],
  })
}

/** `records` with every call counted by operation and outcome. */
export function meteredRecords(records: RecordBackend, metrics: StoreMetrics): RecordBackend {
  const count = <T>(op: string, p: Promise<T>): Promise<T> => p.then(
    (v) => { metrics.metadataCalls.labels(records.kind, op, v === false ? 'conflict' : 'ok').inc(); return v },
    (err: unknown) => { metrics.metadataCalls.labels(records.kind, op, 'error').inc(); throw err },
  )
  return {
    get kind() { return records.kind },
    get shared() { return records.shared },
    get: (id) => count('get', records.get(id)),
    list: () => count('list', records.list()),
    put: (id, rec, rev) => count('put', records.put(id, rec, rev)),
    del: (id, rev) => count('del', records.del(id, rev)),
    nextVersion: (name) => count('next_version', records.nextVersion(name)),
    claimVersion: (name, n, claim) => count('claim_version', records.claimVersion(name, n, claim)),
    claimTransfer: (id) => count('claim', records.claimTransfer(id)),
    putIfUnowned: (id, rec, rev) => count('put_if_unowned', records.putIfUnowned(id, rec, rev)),
    health: () => records.health(),
    close: () => records.close(),
  }
}

/** `blobs` with every byte read or committed counted under `backend` ('dir', 's3'). */
export function meteredBlobs(blobs: BlobStore, metrics: StoreMetrics, backend: string): BlobStore {
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
        commit: async (as) => {
          await staged.commit(as)
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
