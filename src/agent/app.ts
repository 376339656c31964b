/**
 * Build a running agent from a Config: check the pool, make sure
 * <pool>/images and <pool>/guests exist, open the metadata store, reconcile
 * it with ZFS, and assemble services and the HTTP app. main.ts only listens.
 */
import { mkdirSync } from 'node:fs'
import type Koa from 'koa'
import type { Config } from './config.js'
import { createZfs, createZfsRunner, DatasetNotFoundError, type Zfs } from '../zfs/index.js'
import { openDb } from '../common/db.js'
import { createScope, type Scope } from './services/scope.js'
import { createServices, type Services } from './services/index.js'
import { createFetchQueue, type FetchQueue } from './jobs/queue.js'
import { imageRecords, reconcile } from './catalog.js'
import { createApp } from './http/app.js'
import type { Logger } from '../common/log.js'

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
