/** A method of the agent's RPC surface: its request struct and its handler, defined once. */
import type { Infer, StructSpec } from './schema.js'
import type { Dialect } from './error-codes.js'

/** json-rpc-2.0's serverParams: what each call carries besides its params. */
export interface CallContext {
  /** Aborted when the client goes away before its answer is written; handlers pass it to zfs. */
  readonly signal: AbortSignal
  /** The HTTP request's X-Request-Id, for the call's log line. */
  readonly requestId?: string | undefined
  /** The wire dialect the call came in: error texts differ. */
  readonly dialect: Dialect
}

export interface RpcMethod<S extends StructSpec = StructSpec> {
  /** The Go request struct this method decodes its single param into. */
  readonly params: S
  /**
   * Run the method on decoded params. The result is already in wire shape
   * (key order and omitted empties as the original's JSON).
   */
  call(params: Infer<S>, ctx: CallContext): Promise<unknown>
}

/** A method from its spec; the handler's param type is inferred from the spec. */
export function defineMethod<S extends StructSpec>(params: S, call: (p: Infer<S>, ctx: CallContext) => Promise<unknown>): RpcMethod<S> {
  return { params, call }
}

/** Canonical names without the service prefix: 'CloneImage', 'DeleteGuestsDisks', ... */
export type MethodTable = ReadonlyMap<string, RpcMethod>

/** Names the README documents but the original never registered → the real ones. */
export const METHOD_ALIASES: ReadonlyMap<string, string> = new Map([
  ['DeleteGuestDisks', 'DeleteGuestsDisks'],
  ['ListSnapshot', 'ListSnapshots'],
])
