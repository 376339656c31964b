/** The agent's HTTP app, assembled once from what it serves; it never listens itself. */
import Koa from 'koa'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RouterContext } from '@koa/router'
import { createRouter, routed } from '../../common/router.js'
import type { Services } from '../services/index.js'
import type { Zfs } from '../../zfs/index.js'
import type { Logger } from '../../common/log.js'
import type { Metrics } from '../ops/metrics.js'
import { createRpcServer } from '../rpc/server.js'
import { rpcHandler, rpcMethodNotAllowed, RPC_PATH } from './rpc-route.js'
import { fastRpc } from './fast-rpc.js'
import { snapshotDownload, DOWNLOAD_PATH, fromBody, fromQuery } from './snapshot-download.js'
import { requestId } from './request-id.js'
import { hostCheck } from './host-check.js'
import { bearerAuth } from './bearer-auth.js'
import { health } from './health.js'
import { countRequests, metricsPage } from './metrics.js'

export const HEALTH_PATH = '/healthz'
export const METRICS_PATH = '/metrics'

export interface AppOps {
  /** Bearer token every route but /healthz requires. */
  readonly token?: string | undefined
  /** Serve /metrics from these and record requests, RPC calls and download bytes. */
  readonly metrics?: Metrics | undefined
  /** The pool /healthz reports on. */
  readonly pool?: string | undefined
  /**
   * Host names accepted besides IP literals, localhost and the machine's
   * hostname (host-check.ts); `*` turns the check off (a unix socket, which
   * no browser can reach).
   */
  readonly allowedHosts?: readonly string[] | undefined
}

const text = (ctx: Koa.Context, body: string) => {
  ctx.type = 'text/plain; charset=utf-8'
  ctx.body = body
}

/** 405 bodies (status and Allow come from the router): gorilla's exact text on the RPC path, a plain line elsewhere. */
async function methodNotAllowed(ctx: Koa.Context): Promise<void> {
  const route = (ctx as RouterContext).matched?.[0]?.path
  if (route === RPC_PATH) await rpcMethodNotAllowed(ctx, async () => {})
  else text(ctx, `method ${ctx.method} not allowed here; allowed: ${ctx.response.get('Allow')}\n`)
}
const answers = { methodNotAllowed, notFound: () => {} } // a 404 keeps Koa's own body

type Handler = ReturnType<Koa['callback']>

/** Koa with the RPC fast path (fast-rpc.ts) in front: every server made from callback() or listen() gets it. */
class AgentApp extends Koa {
  constructor(private readonly fast: (req: IncomingMessage, res: ServerResponse) => boolean) { super() }
  override callback(): Handler {
    const koa = super.callback()
    return async (req, res) => {
      if (!this.fast(req as IncomingMessage, res as ServerResponse)) await koa(req, res)
    }
  }
}

export function createApp(d: { services: Services; zfs: Zfs; log: Logger; ops?: AppOps | undefined }): Koa {
  const ops = d.ops ?? {}
  const logError = (obj: object, msg: string) => d.log.error(obj, msg)
  const rpc = createRpcServer(d.services, {
    observe: (e) => {
      ops.metrics?.observeRpc(e.method, e.outcome, e.durationMs / 1000)
      d.log.info({ reqId: e.requestId, method: e.method, durationMs: Math.round(e.durationMs * 1000) / 1000, outcome: e.outcome }, 'rpc')
    },
    log: logError,
  })

  const routeOptions = { log: logError }
  const app = new AgentApp(fastRpc({ rpc, token: ops.token, allowedHosts: ops.allowedHosts, metrics: ops.metrics, route: routeOptions, log: logError }))

  const routes = createRouter()
  routes.get(HEALTH_PATH, health(d.zfs, ops.pool))
  routes.post(RPC_PATH, rpcHandler(rpc, routeOptions))
  const downloads = { downloads: d.services.downloads, log: d.log, onSentBytes: ops.metrics?.onSentBytes }
  routes.get(DOWNLOAD_PATH, snapshotDownload(downloads, fromQuery)) // GET and HEAD
  routes.post(DOWNLOAD_PATH, snapshotDownload(downloads, fromBody))
  if (ops.metrics) routes.get(METRICS_PATH, metricsPage(ops.metrics))

  app.use(requestId())
  if (ops.metrics) app.use(countRequests(ops.metrics))
  app.use(hostCheck(ops.allowedHosts)) // before any route: a rebound browser request runs nothing
  // One router behind the token check, which lets /healthz through (monitoring probes it): a second router for it cost every call a second match.
  app.use(bearerAuth(ops.token, { open: [HEALTH_PATH] }))
  for (const m of routed(routes, answers)) app.use(m)
  app.on('error', (err: Error) => d.log.error({ err: err.message }, 'http error'))
  return app
}
