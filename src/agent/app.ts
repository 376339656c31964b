/** Build a running agent from its configuration: everything it needs is made here, once; main.ts only listens. */
import { mkdirSync } from 'node:fs'
import type Koa from 'koa'
import type { Config } from './config.js'
import { isIP } from 'node:net'
import { createZfs, createZfsRunner, DatasetNotFoundError, type ScannedDataset, type Zfs, type ZfsRunner } from '../zfs/index.js'
import { openDb } from '../common/db.js'
import { createScope, type Scope } from './services/scope.js'
import { createServices, type Services } from './services/index.js'
import { createFetchQueue, type FetchQueue } from './jobs/queue.js'
import { imageRecords, reconcile, SCAN_PROPS } from './catalog.js'
import { createApp } from './http/app.js'
import type { Logger } from '../common/log.js'
import { createMetrics, type Metrics } from './ops/metrics.js'
import { instrumentRunner } from './ops/zfs-metrics.js'

export interface Agent {
  readonly app: Koa
  readonly services: Services
  readonly scope: Scope
  readonly zfs: Zfs
  readonly fetches: FetchQueue
  readonly metrics: Metrics
  close(): Promise<void>
}

export class StartupError extends Error {
  override name = 'StartupError'
}

export interface AgentDeps {
  readonly log: Logger
  /** How zfs and zpool are run (tests wrap it); by default the real commands with config.zfsTimeoutMs. */
  readonly runner?: ZfsRunner
  /** Also export the process's own metrics (CPU, memory, event loop): the real program does. */
  readonly processMetrics?: boolean
}

/**
 * The Host check's extra names: none on a unix socket (no browser can reach
 * it, and clients send any Host there); otherwise --allowed-hosts plus the
 * listen address when it is a name (clients then use it as Host).
 */
export function allowedHosts(c: Pick<Config, 'socket' | 'allowedHosts' | 'listen'>): string[] {
  if (c.socket !== undefined) return ['*']
  return [...(c.allowedHosts ?? []), ...(isIP(c.listen) === 0 ? [c.listen] : [])]
}

export async function createAgent(config: Config, deps: AgentDeps): Promise<Agent> {
  const log = deps.log
  const fetches = createFetchQueue({ concurrency: config.fetchers, maxPending: config.maxPending })
  const metrics = createMetrics({ defaultMetrics: deps.processMetrics ?? false, fetchQueue: () => fetches.size })
  const zfs = createZfs(instrumentRunner(deps.runner ?? createZfsRunner({ timeoutMs: config.zfsTimeoutMs }), metrics))
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
  if (config.acceptUndigestedImages) log.warn({ imageServer: config.imageServer }, 'acceptUndigestedImages is on: images from the image service that publish no sha256 are imported unverified')
  mkdirSync(config.metadataDir, { recursive: true })
  const db = await openDb(config.metadataDir)
  const records = imageRecords(db) // the one instance: it keeps the records in memory
  // One look at both trees serves the catalog's reconcile and the release of stale download holds.
  let tree: ScannedDataset[]
  try {
    tree = await zfs.scan([scope.images, scope.guests], SCAN_PROPS)
    await reconcile(zfs, scope, records, log, tree)
  } catch (e) {
    await db.close()
    throw e
  }
  const services = createServices({ zfs, scope, records, fetches, config, onError: (obj, msg) => log.error(obj, msg) })
  // Not fatal: a hold we fail to drop blocks only destroying that snapshot.
  await services.downloads.releaseStale(tree).then(
    (n) => { if (n) log.warn({ holds: n }, 'released download holds left by a previous run') },
    (e: Error) => log.error({ err: e.message }, 'could not release stale download holds'))
  const app = createApp({ services, zfs, log, ops: { token: config.token, metrics, pool: config.zpool, allowedHosts: allowedHosts(config) } })
  return {
    app, services, scope, zfs, fetches, metrics,
    async close() {
      await fetches.close()
      await db.close()
    },
  }
}
