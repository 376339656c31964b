/**
 * THE one table from errors to the wire. Every AgentError `code` and every
 * ZfsError `kind` has a row (the Record types make the compiler check it):
 * a JSON-RPC 2.0 code (standard codes, or the implementation-defined range
 * -32000..-32099 mirroring the HTTP status), the HTTP status used where a
 * status carries the error (download route, plain-text transport errors), and
 * whether the message may be shown to the client.
 *
 * Dialects: JSON-RPC 2.0 gets `{code, message, data}`; unexposed errors get a
 * generic message plus a `data.ref` to find the real one in the log. The
 * gorilla 1.0 dialect gets the bare error text, as the original sent Go's
 * `err.Error()`: the message of any AgentError/ZfsError, a generic text for
 * anything else (an unexpected exception's text is ours, not a contract).
 */
import { randomUUID } from 'node:crypto'
import { AgentError, type ErrorCode } from '../errors.js'
import { ZfsError, type ZfsErrorKind } from '../../zfs/errors.js'
import { JsonSyntaxError } from './gorilla/json.js'

export interface ErrorRow {
  readonly rpcCode: number
  readonly httpStatus: number
  readonly expose: boolean
}

/** The JSON-RPC 2.0 reserved codes we use. */
export const RPC = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
} as const

const row = (rpcCode: number, httpStatus: number, expose = true): ErrorRow => ({ rpcCode, httpStatus, expose })
const INTERNAL = row(RPC.internal, 500, false)
const INVALID_PARAMS = row(RPC.invalidParams, 400)
const NOT_FOUND = row(-32004, 404)
const EXISTS = row(-32009, 409)
const CONFLICT = row(-32010, 409)
const BUSY = row(-32011, 503)
const UPSTREAM = row(-32012, 502)
const NO_SPACE = row(-32013, 507)
const UNAVAILABLE = row(-32014, 503)
const TIMEOUT = row(-32015, 504)

export const AGENT_ERROR_ROWS: Readonly<Record<ErrorCode, ErrorRow>> = {
  invalid_params: INVALID_PARAMS,
  not_found: NOT_FOUND,
  already_exists: EXISTS,
  conflict: CONFLICT,
  busy: BUSY,
  no_space: NO_SPACE,
  upstream: UPSTREAM,
  unavailable: UNAVAILABLE,
  internal: INTERNAL,
}

export const ZFS_ERROR_ROWS: Readonly<Record<ZfsErrorKind, ErrorRow>> = {
  not_found: NOT_FOUND,
  already_exists: EXISTS,
  busy: BUSY,
  invalid_name: INVALID_PARAMS,
  has_clones: CONFLICT,
  has_children: CONFLICT,
  more_recent_snapshots: CONFLICT,
  out_of_space: NO_SPACE,
  // A broken send stream came from the image source: the upstream's fault.
  invalid_stream: UPSTREAM,
  timeout: TIMEOUT,
  // The CLI's output drifted, or zfs failed in a way we do not classify:
  // our problem, and its stderr may hold paths; log it, do not show it.
  parse: INTERNAL,
  other: INTERNAL,
}

/** A body that is not JSON (envelope parse failure). */
export const PARSE_ERROR_ROW = row(RPC.parseError, 400)

export type ErrorSource = 'agent' | 'zfs' | 'syntax' | 'unknown'

/** Which row an error uses, and where it came from ('unknown' = not one of ours). */
export function classifyError(err: unknown): { source: ErrorSource; key: string; row: ErrorRow } {
  if (err instanceof AgentError) return { source: 'agent', key: err.code, row: AGENT_ERROR_ROWS[err.code] ?? INTERNAL }
  if (err instanceof ZfsError) return { source: 'zfs', key: err.kind, row: ZFS_ERROR_ROWS[err.kind] ?? INTERNAL }
  if (err instanceof JsonSyntaxError) return { source: 'syntax', key: 'parse_error', row: PARSE_ERROR_ROW }
  return { source: 'unknown', key: 'internal', row: INTERNAL }
}

export type Dialect = '1.0' | '2.0'

export interface WireError {
  readonly rpcCode: number
  readonly httpStatus: number
  /** What the client sees (2.0 `message`, 1.0 `error` string, plain-text body). */
  readonly message: string
  /** 2.0 `data`: the error's code/kind, and a log reference when not exposed. */
  readonly data?: { readonly code: string; readonly ref?: string }
  /**
   * The table's flag. False: an internal failure; log the real error with
   * `data.ref` (2.0 shows a generic message; 1.0 still shows our own texts).
   */
  readonly expose: boolean
}

/** Generic texts for errors we do not show. */
export const INTERNAL_MESSAGE = 'Internal error'
export const LEGACY_INTERNAL_MESSAGE = 'internal error'

/**
 * Map any thrown value to what goes on the wire. `dialect` '2.0' (default,
 * also right for plain-text HTTP errors) hides unexposed messages; '1.0'
 * keeps the text of our own error classes, as the original did.
 */
export function wireError(err: unknown, dialect: Dialect = '2.0'): WireError {
  const { source, key, row } = classifyError(err)
  const text = err instanceof Error ? err.message : String(err)
  const message = dialect === '1.0'
    ? (source === 'unknown' ? LEGACY_INTERNAL_MESSAGE : text)
    : (row.expose ? text : INTERNAL_MESSAGE)
  const data = row.expose ? { code: key } : { code: key, ref: randomUUID() }
  return { rpcCode: row.rpcCode, httpStatus: row.httpStatus, message, data, expose: row.expose }
}
