/**
 * The agent's fetch job on the host, as the agent builds it (jobs/fetch-image.ts:
 * queue, records, importImage), over a zfs whose `receive` takes the stream into
 * a hash: for tests of how the agent reaches image service replicas (not of zfs,
 * which the VM tier tests).
 */
import { createHash, randomBytes } from 'node:crypto'
import { createImageFetch } from '../../src/agent/jobs/fetch-image.js'
import { createFetchQueue } from '../../src/agent/jobs/queue.js'
import { createScope } from '../../src/agent/services/scope.js'
import { cachedTable, type ImageRecord } from '../../src/agent/catalog.js'
import { DEFAULTS, normaliseImageServers } from '../../src/agent/config.js'
import type { Deps } from '../../src/agent/services/deps.js'
import { DatasetNotFoundError, type Dataset, type Zfs } from '../../src/zfs/index.js'

const MiB = 1 << 20

/** Bytes the agent takes for a plain full zfs send stream (a DRR_BEGIN record, little-endian), then `n` random ones. */
export function zfsLike(n: number): Buffer {
  const b = randomBytes(312 + n)
  b.fill(0, 0, 312)
  Buffer.from([0xac, 0xcb, 0xba, 0xf5, 0x02, 0, 0, 0]).copy(b, 8) // DMU_BACKUP_MAGIC
  b.writeBigUInt64LE(1n, 16) // versioninfo: a substream, not compound
  return b
}

/**
 * Just the zfs an import of a zfs stream uses; `receive` hashes what it is
 * fed (`fed`: also a receive that failed), `slowMs` after each chunk (a
 * receive slower than the network: bytes wait in the agent's buffers).
 */
export function fakeZfs(slowMs = 0) {
  const received: Array<{ name: string; bytes: number; sha256: string }> = []
  const fed: Buffer[] = []
  const ds = new Set<string>()
  const view = (name: string, type: Dataset['type']) => ({ name, type, volsize: type === 'volume' ? 4 * MiB : undefined, origin: undefined }) as unknown as Dataset
  const api: Partial<Zfs> = {
    findDataset: async (name) => (ds.has(name) ? view(name, 'volume') : undefined),
    receive: async (name, input) => {
      const h = createHash('sha256')
      let bytes = 0
      for await (const c of input as AsyncIterable<Buffer>) {
        h.update(c); bytes += c.length; fed.push(c)
        if (slowMs) await new Promise((r) => setTimeout(r, slowMs))
      }
      received.push({ name, bytes, sha256: h.digest('hex') })
      ds.add(name)
    },
    listDatasets: async (o) => [...ds].filter((n) => o.roots?.includes(n)).flatMap((n) => [view(n, 'volume'), view(`${n}@test`, 'snapshot')]),
    setProps: async () => {},
    rename: async (from, to) => { ds.delete(from); ds.add(to) },
    destroy: async (name) => { if (!ds.delete(name)) throw new DatasetNotFoundError(`cannot open '${name}': dataset does not exist`) },
  }
  return { zfs: api as Zfs, received, fed: () => Buffer.concat(fed) }
}

export interface T { teardown(f: () => void | Promise<void>): void }

/** The fetch job as the agent builds it, over `imageServer` (one or more replicas, comma-separated), starting at the first. */
export function agentFetch(t: T, imageServer: string, o: { slowMs?: number; firstReplica?: number; incrementDepth?: number; queue?: { concurrency: number; maxPending: number } } = {}) {
  const { zfs, received, fed } = fakeZfs(o.slowMs)
  const recs = new Map<string, ImageRecord>()
  const records = cachedTable<ImageRecord>({
    get: async (id) => recs.get(id), values: async () => [...recs.values()], entries: async () => [...recs.entries()],
    put: async (id, v) => { recs.set(id, v) }, del: async (id) => { recs.delete(id) }, batch: async () => {},
  })
  const fetches = createFetchQueue(o.queue ?? { concurrency: 2, maxPending: 8 })
  t.teardown(() => fetches.close())
  const d = {
    zfs, scope: createScope('tank'), records, fetches,
    // Full streams only by default: these tests count every request a replica sees (increments have their own tests).
    config: { ...DEFAULTS, imageServer: normaliseImageServers(imageServer), fetchIdleTimeoutMs: 5000, allowSourceHosts: ['127.0.0.1'], incrementDepth: o.incrementDepth ?? 0 },
  } as unknown as Deps
  const fetchImage = createImageFetch(d, { firstReplica: o.firstReplica ?? 0 })
  return {
    fetch: (id: string) => fetchImage(id, '', false, undefined, undefined),
    /** As an async RequestImage calls it: a refusal throws synchronously, before the caller answers. */
    fetchAsync: (id: string) => fetchImage(id, '', true, undefined, undefined),
    /** As RequestImage with a `source` and the caller's sha256. */
    fetchFrom: (id: string, source: string, sha256: string) => fetchImage(id, source, false, undefined, sha256),
    records: recs, received, fed,
  }
}

