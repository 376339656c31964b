/**
 * Build a running agent from a Config: check the pool, make sure
 * <pool>/images and <pool>/guests exist, open the metadata store, reconcile
 * it with ZFS, and assemble services and the HTTP app. main.ts only listens.
 */
import { mkdirSync } from 'node:fs'
import type Koa from 'koa'
import type { Config } from './config.js'
import { createZfs, createZfsRunner, DatasetNotFoundError, type Dataset, type Zfs } from './zfs/index.js'
import { openDb } from './store/db.js'
import { createScope, type Scope } from './services/scope.js'
import { imageRecords, type ImageRecords } from './services/image-records.js'
import { createServices, type Services } from './services/index.js'
import { createFetchQueue, type FetchQueue } from './fetch/queue.js'
import { TEMPORARY_PREFIXES, PROP_FORMAT, PROP_IMAGE, PROP_SHA256 } from './fetch/import-image.js'
import { toMiB } from './services/shapes.js'
import { createApp } from './http/app.js'
import type { Logger } from './log.js'

export interface Agent {
  readonly app: Koa
  readonly services: Services
  readonly scope: Scope
  readonly zfs: Zfs
  readonly fetches: FetchQueue
  close(): Promise<void>
}

export class StartupError extends Error {
  override name = 'StartupError'
}

/**
 * A verified import renamed into place whose record was never written (a
 * crash between the two): the marks import-image.ts sets before the rename
 * say it is ours and whole, so its record is written now.
 */
async function adopt(zfs: Zfs, ds: Dataset, id: string, records: ImageRecords, log: Logger): Promise<void> {
  const props = (await zfs.getProps([ds.name], [PROP_IMAGE, PROP_SHA256, PROP_FORMAT])).get(ds.name)
  if (props?.get(PROP_IMAGE) !== id) return // not an import of ours (e.g. a CloneImage dest)
  const snaps = await zfs.listDatasets({ types: ['snapshot'], roots: [ds.name], depth: 1 })
  if (snaps.length !== 1) return
  const sha256 = props.get(PROP_SHA256)
  const format = props.get(PROP_FORMAT)
  await records.put(id, {
    id, type: '', volume: ds.name, snapshot: snaps[0]!.name, size: toMiB(ds.volsize), status: 'complete',
    ...(sha256 ? { sha256 } : {}), ...(format ? { format } : {}),
  })
  log.warn({ image: id }, 'adopted an image imported just before a crash')
}

/** Remove what a crash can leave behind, and records whose dataset is gone. */
async function reconcile(zfs: Zfs, scope: Scope, records: ImageRecords, log: Logger): Promise<void> {
  const children = await zfs.listDatasets({ types: ['volume', 'filesystem'], roots: [scope.images], depth: 1 })
  const known = new Set((await records.values()).map((r) => r.volume))
  for (const ds of children) {
    const child = ds.name.slice(scope.images.length + 1)
    if (TEMPORARY_PREFIXES.some((p) => child.startsWith(p))) {
      log.warn({ dataset: ds.name }, 'removing an interrupted import')
      // One leftover that cannot go (a clone was made of it by hand) must not keep the agent down.
      await zfs.destroy(ds.name, { recursive: true }).catch((e: Error) => log.error({ dataset: ds.name, err: e.message }, 'could not remove an interrupted import; left in place'))
    } else if (ds.type === 'volume' && !known.has(ds.name)) {
      await adopt(zfs, ds, child, records, log)
    }
  }
  // One listing for all records: a zfs command per record made start-up grow with the image count.
  const snapshots = new Set((await zfs.listDatasets({ types: ['snapshot'], roots: [scope.images], depth: 2 })).map((d) => d.name))
  for (const r of await records.values()) {
    if (r.status === 'pending' || r.status === 'downloading') {
      // Nothing resumes a fetch across a restart: say so; the next RequestImage starts afresh.
      log.warn({ image: r.id }, 'fetch interrupted by a restart')
      await records.put(r.id, { ...r, status: 'error', error: 'interrupted: the agent restarted during the fetch' })
    } else if (r.status === 'complete' && !snapshots.has(r.snapshot)) {
      log.warn({ image: r.id, snapshot: r.snapshot }, 'image dataset vanished; forgetting the record')
      await records.del(r.id)
    }
  }
}

export async function createAgent(config: Config, o: { zfs?: Zfs; log: Logger }): Promise<Agent> {
  const zfs = o.zfs ?? createZfs(createZfsRunner({ timeoutMs: config.zfsTimeoutMs }))
  const scope = createScope(config.zpool)
  const pools = await zfs.pools().catch((e: Error) => { throw new StartupError(`zpool list failed: ${e.message}`) })
  const pool = pools.find((p) => p.name === config.zpool)
  if (!pool) throw new StartupError(`pool ${config.zpool} is not imported (have: ${pools.map((p) => p.name).join(', ') || 'none'})`)
  if (pool.health !== 'ONLINE' && pool.health !== 'DEGRADED') throw new StartupError(`pool ${config.zpool} is ${pool.health}`)
  for (const root of [scope.images, scope.guests]) {
    try {
      await zfs.getDataset(root)
    } catch (e) {
      if (!(e instanceof DatasetNotFoundError)) throw e
      await zfs.createFilesystem(root)
    }
  }
  // A quota on images/ keeps imports from filling the pool under the guests' disks.
  if (config.imagesQuota !== undefined) await zfs.setProps(scope.images, { quota: String(config.imagesQuota) })
  if (config.acceptUndigestedImages) o.log.warn({ imageServer: config.imageServer }, 'acceptUndigestedImages is on: images from the image service that publish no sha256 are imported unverified')
  mkdirSync(config.metadataDir, { recursive: true })
  const db = await openDb(config.metadataDir)
  const records = imageRecords(db) // the one instance: it keeps the records in memory
  try {
    await reconcile(zfs, scope, records, o.log)
  } catch (e) {
    await db.close()
    throw e
  }
  const fetches = createFetchQueue({ concurrency: config.fetchers, maxPending: config.maxPending })
  const services = createServices({ zfs, scope, records, fetches, config, onError: (obj, msg) => o.log.error(obj, msg) })
  // Not fatal: a hold we fail to drop blocks only destroying that snapshot.
  await services.downloads.releaseStale().then(
    (n) => { if (n) o.log.warn({ holds: n }, 'released download holds left by a previous run') },
    (e: Error) => o.log.error({ err: e.message }, 'could not release stale download holds'))
  const app = createApp({ services, zfs, log: o.log })
  return {
    app, services, scope, zfs, fetches,
    async close() {
      await fetches.close()
      await db.close()
    },
  }
}
