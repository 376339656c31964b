/**
 * POST /_mistify_RPC_ without Koa's chain. Koa's context, the router and
 * the middleware were a large share of a small call's CPU (GetImage, see the
 * README's Benchmarks); a call that passes every check the chain would make is
 * answered here with the same functions and the same bytes. Anything else
 * (another path or method, a query string, a refused Host or token) goes to
 * Koa, which answers it as before.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Metrics } from '../ops/metrics.js'
import type { RpcServer } from '../rpc/server.js'
import { answerRpc, bodyLength, RPC_PATH, type RpcHttpAnswer, type RpcRouteOptions } from './rpc-route.js'
import { hostAllowed } from './host-check.js'
import { checkBearer } from './bearer-auth.js'
import { REQUEST_ID_HEADER, requestIdOf } from './request-id.js'
import { countRequest } from './metrics.js'

export interface FastRpcDeps {
  readonly rpc: RpcServer
  readonly token?: string | undefined
  readonly allowedHosts?: readonly string[] | undefined
  readonly metrics?: Metrics | undefined
  readonly route?: RpcRouteOptions
  readonly log: (obj: object, msg: string) => void
}

/** A handler that answers the calls it takes and returns false for every other request. */
export function fastRpc(d: FastRpcDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== RPC_PATH || !hostAllowed(req.headers.host, d.allowedHosts)) return false
    if (d.token !== undefined && !checkBearer(req.headers.authorization, d.token)) return false
    const given = req.headers['x-request-id']
    const id = requestIdOf(typeof given === 'string' ? given : undefined)
    res.setHeader(REQUEST_ID_HEADER, id)
    answerRpc(d.rpc, req, res, id, d.route)
      .then((a) => { if (a === null) res.destroy(); else send(res, a) })
      .catch((err: Error) => { d.log({ err: err.message }, 'http error'); res.destroy() })
      .finally(() => { if (d.metrics) countRequest(d.metrics, RPC_PATH, res.statusCode) })
    return true
  }
}

function send(res: ServerResponse, a: RpcHttpAnswer): void {
  res.statusCode = a.status
  for (const [k, v] of a.headers) res.setHeader(k, v)
  const body = a.body
  if (body === null) { res.end(); return }
  const length = bodyLength(body)
  res.setHeader('Content-Length', length)
  if (typeof body === 'string' || Buffer.isBuffer(body)) { res.end(body); return }
  // Already in memory: handed to the socket as they are, nothing copied, in one writev (end() uncorks).
  res.cork()
  for (const chunk of body) res.write(chunk)
  res.end()
}
