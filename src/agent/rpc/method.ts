/** What the wire layer needs to know about a method; services/ fills the table. */
import type { StructSpec } from './schema.js'

export interface CallContext {
  /** Aborted when the client goes away or the agent shuts down. */
  readonly signal: AbortSignal
}

export interface RpcMethod {
  /** The Go request struct this method decodes its single param into. */
  readonly params: StructSpec
  /**
   * Run the method on decoded params. The result is already in wire shape
   * (key order and omitted empties as the original's JSON).
   */
  call(params: Record<string, unknown>, ctx: CallContext): Promise<unknown>
}

/** Canonical names without the service prefix: 'CloneImage', 'DeleteGuestsDisks', ... */
export type MethodTable = ReadonlyMap<string, RpcMethod>
