/**
 * The agent's HTTP app: request ids, access control, /healthz, /metrics,
 * JSON-RPC and the snapshot download. Never listens itself.
 *
 * Operational settings (token, metrics, pool for /healthz) come either with
 * createApp's `ops` or later through configureOps(app, …) (main.ts, which
 * gets the app from createAgent); the middlewares read them per request.
 */
import Koa from 'koa'
import type { Services } from '../services/index.js'
import type { Zfs } from '../../zfs/index.js'
import type { Logger } from '../../common/log.js'
import { methodTable } from '../rpc/methods.js'
import { rpcRoute } from './rpc-route.js'
import { snapshotDownload, DOWNLOAD_PATH } from './snapshot-download.js'
import type { Metrics } from '../ops/metrics.js'
import {
  bearerAuth, countResponseBytes, healthRoute, hostCheck, metricsRoute, observeMethods, requestId,
} from './ops.js'

export interface AppOps {
  /** Bearer token every route but /healthz requires. */
  readonly token?: string | undefined
  /** Serve /metrics from these and record RPC calls and download bytes. */
  readonly metrics?: Metrics | undefined
  /** The pool /healthz reports on. */
  readonly pool?: string | undefined
  /**
   * Host names accepted besides IP literals, localhost and the machine's
   * hostname (ops/http.ts hostAllowed); `*` turns the check off (main.ts does
   * when serving a unix socket, which no browser can reach).
   */
  readonly allowedHosts?: readonly string[] | undefined
}

const OPS = new WeakMap<Koa, { ops: AppOps }>()

/** Set (replace) the operational settings of an app made by createApp. */
export function configureOps(app: Koa, ops: AppOps): void {
  const slot = OPS.get(app)
  if (!slot) throw new Error('configureOps: not an app made by createApp')
  slot.ops = ops
}

export function createApp(d: { services: Services; zfs: Zfs; log: Logger; ops?: AppOps | undefined }): Koa {
  const app = new Koa()
  const slot = { ops: d.ops ?? {} }
  OPS.set(app, slot)
  const methods = observeMethods(methodTable(d.services), (e) => {
    slot.ops.metrics?.observeRpc(e.method, e.outcome, e.durationMs / 1000)
    d.log.info({ reqId: e.requestId, method: e.method, durationMs: Math.round(e.durationMs * 1000) / 1000, outcome: e.outcome }, 'rpc')
  })
  app.use(requestId())
  app.use(hostCheck(() => slot.ops.allowedHosts)) // before any route: a rebound browser request runs nothing
  app.use(healthRoute(d.zfs, () => slot.ops.pool))
  app.use(bearerAuth(() => slot.ops.token))
  app.use(metricsRoute(() => slot.ops.metrics))
  app.use(countResponseBytes(DOWNLOAD_PATH, () => slot.ops.metrics?.onSentBytes))
  app.use(rpcRoute(methods, { log: (obj, msg) => d.log.error(obj, msg) }))
  app.use(snapshotDownload({ downloads: d.services.downloads, log: d.log }))
  app.on('error', (err: Error) => d.log.error({ err: err.message }, 'http error'))
  return app
}
