/**
 * Domain errors of the agent. Each carries a `code`; rpc/error-codes.ts is the
 * one table that turns codes (and the ZFS adapter's error kinds) into wire
 * codes and HTTP statuses. Messages that the original sent as sentinels
 * ('not found', 'need an id', ...) are kept byte-exact: callers match on them.
 */
export type ErrorCode =
  | 'invalid_params'
  | 'not_found'
  | 'already_exists'
  | 'conflict'
  | 'busy'
  | 'no_space'
  | 'upstream'
  | 'unavailable'
  | 'internal'

export class AgentError extends Error {
  override name = 'AgentError'
  readonly code: ErrorCode = 'internal'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Bad input: nothing was changed. */
export class InvalidParamsError extends AgentError {
  override name = 'InvalidParamsError'
  override readonly code = 'invalid_params'
}
export class NotFoundError extends AgentError {
  override name = 'NotFoundError'
  override readonly code = 'not_found'
  constructor(message = 'not found', options?: { cause?: unknown }) { super(message, options) }
}
export class AlreadyExistsError extends AgentError {
  override name = 'AlreadyExistsError'
  override readonly code = 'already_exists'
}
/** The request is valid but the current state forbids it (clones, newer snapshots). */
export class ConflictError extends AgentError {
  override name = 'ConflictError'
  override readonly code = 'conflict'
}
/** Try again later: a queue is full, or the agent is shutting down. */
export class BusyError extends AgentError {
  override name = 'BusyError'
  override readonly code = 'busy'
}
export class NoSpaceError extends AgentError {
  override name = 'NoSpaceError'
  override readonly code = 'no_space'
  constructor(message = 'no space left on device', options?: { cause?: unknown }) { super(message, options) }
}
/** The image service (or another source) failed us. */
export class UpstreamError extends AgentError {
  override name = 'UpstreamError'
  override readonly code = 'upstream'
}
