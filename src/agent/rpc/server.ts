/**
 * The method registry: one json-rpc-2.0 server over the method table (and aliases); both dialects
 * call it one call at a time, the call context as serverParams; middleware observes and maps errors.
 */
import { createJSONRPCErrorResponse, JSONRPCServer, type JSONRPCError, type JSONRPCResponse, type JSONRPCServerMiddleware } from 'json-rpc-2.0'
import { METHOD_ALIASES, type CallContext, type MethodTable } from './method.js'
import { methodTable } from './methods.js'
import { wireError } from './error-codes.js'
import { v2ErrorObject } from './gorilla/codec.js'
import { outcomeOf } from '../ops/metrics.js'
import type { Services } from '../services/index.js'

/** One call, reported once: canonical method name, duration, outcome (ok or the error's code). */
export interface RpcEvent {
  readonly method: string
  readonly durationMs: number
  readonly outcome: string
  readonly requestId: string | undefined
}

export interface RpcServerOptions {
  /** Every call, once it has ended (metrics, the `rpc` log line). A throwing observer fails no call. */
  readonly observe?: ((e: RpcEvent) => void) | undefined
  /** Where failures that the client only sees as a `ref` are logged. */
  readonly log?: ((obj: object, msg: string) => void) | undefined
}

export interface RpcServer {
  readonly jsonrpc: JSONRPCServer<CallContext>
  /** The request struct of each method, by canonical name: the Go-compatible decoder's input. */
  readonly methods: MethodTable
  /**
   * Run one call on params already decoded from its spec. Never rejects: a
   * failure comes back as the error object of the call's dialect. The library
   * sees a stand-in id; the caller keeps the raw one.
   */
  call(name: string, params: unknown, ctx: CallContext): Promise<JSONRPCResponse>
  /** The error object for a failure outside the method (a result that cannot be encoded). */
  errorObject(err: unknown, method: string, ctx: CallContext): JSONRPCError
}

/** The agent's server over its services. */
export function createRpcServer(services: Services, opts: RpcServerOptions = {}): RpcServer {
  return rpcServer(methodTable(services), opts)
}

/** A server over any method table (tests give fakes). */
export function rpcServer(methods: MethodTable, opts: RpcServerOptions = {}): RpcServer {
  const log = opts.log ?? (() => {})
  const observe = opts.observe
  // The middleware below answers every failure, so the library's own mapping (and its console.warn) never runs.
  const jsonrpc = new JSONRPCServer<CallContext>({ errorListener: (message, err) => log({ err }, message) })
  for (const [name, m] of methods) jsonrpc.addMethod(name, (params, ctx) => m.call(params, ctx))
  for (const [alias, name] of METHOD_ALIASES) {
    const m = methods.get(name)
    if (m) jsonrpc.addMethod(alias, (params, ctx) => m.call(params, ctx))
  }

  function errorObject(err: unknown, method: string, ctx: CallContext): JSONRPCError {
    const w = wireError(err, ctx.dialect)
    if (!w.expose) log({ err, method, ref: w.data?.ref, aborted: ctx.signal.aborted }, 'rpc method failed')
    return v2ErrorObject(w)
  }

  /** Outermost: whatever a method throws becomes the table's error object for the call's dialect. */
  const toWire: JSONRPCServerMiddleware<CallContext> = async (next, req, ctx) => {
    try {
      return await next(req, ctx)
    } catch (err) {
      const e = errorObject(err, canonical(req.method), ctx)
      return createJSONRPCErrorResponse(req.id ?? null, e.code, e.message, e.data)
    }
  }

  /** Inside toWire, so it sees the method's own error. */
  const observing = (report: (e: RpcEvent) => void): JSONRPCServerMiddleware<CallContext> => async (next, req, ctx) => {
    const start = process.hrtime.bigint()
    let err: unknown
    try {
      return await next(req, ctx)
    } catch (e) {
      err = e ?? new Error('thrown undefined')
      throw e
    } finally {
      const durationMs = Number(process.hrtime.bigint() - start) / 1e6
      try { report({ method: canonical(req.method), durationMs, outcome: outcomeOf(err), requestId: ctx.requestId }) } catch { /* never fail a call for its report */ }
    }
  }

  jsonrpc.applyMiddleware(...(observe ? [toWire, observing(observe)] : [toWire]))

  return {
    jsonrpc,
    methods,
    errorObject,
    async call(name, params, ctx) {
      const res = await jsonrpc.receive({ jsonrpc: '2.0', method: name, params, id: 0 }, ctx)
      // Only a notification gets no response, and the stand-in id makes none.
      if (!res) throw new Error(`json-rpc-2.0 gave no response to ${name}`)
      return res
    },
  }
}

const canonical = (name: string) => METHOD_ALIASES.get(name) ?? name
