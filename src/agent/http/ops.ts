/** Until the json-rpc-2.0 server's middleware takes it over: the per-RPC wrapper that logs and measures every method call. */
import type { MethodTable, RpcMethod } from '../rpc/method.js'
import { outcomeOf } from '../ops/metrics.js'
import { requestContext } from './request-id.js'

export interface RpcEvent {
  readonly method: string
  readonly durationMs: number
  readonly outcome: string
  readonly requestId: string | undefined
}

/** The same table, each method reporting its name, duration and outcome once per call. */
export function observeMethods(table: MethodTable, report: (e: RpcEvent) => void): MethodTable {
  const out = new Map<string, RpcMethod>()
  for (const [name, m] of table) {
    out.set(name, {
      params: m.params,
      async call(params, ctx) {
        const start = process.hrtime.bigint()
        let err: unknown
        try {
          return await m.call(params, ctx)
        } catch (e) {
          err = e ?? new Error('thrown undefined')
          throw e
        } finally {
          const durationMs = Number(process.hrtime.bigint() - start) / 1e6
          try { report({ method: name, durationMs, outcome: outcomeOf(err), requestId: requestContext.getStore()?.requestId }) } catch { /* never fail a call for its report */ }
        }
      },
    })
  }
  return out
}
