/** The agent's HTTP app: JSON-RPC and the snapshot download. Never listens itself. */
import Koa from 'koa'
import type { Services } from '../services/index.js'
import type { Zfs } from '../zfs/index.js'
import type { Logger } from '../log.js'
import { methodTable } from '../rpc/methods.js'
import { rpcRoute } from './rpc-route.js'
import { snapshotDownload } from './snapshot-download.js'

export function createApp(d: { services: Services; zfs: Zfs; log: Logger }): Koa {
  const app = new Koa()
  app.use(rpcRoute(methodTable(d.services), { log: (obj, msg) => d.log.error(obj, msg) }))
  app.use(snapshotDownload({ downloads: d.services.downloads, log: d.log }))
  app.on('error', (err: Error) => d.log.error({ err: err.message }, 'http error'))
  return app
}
