/** The native API's bodies: records as the original's metadata.Image, and its two error shapes. */
import type Koa from 'koa'
import type { ImageRecord } from '../store/store.js'

/** metadata.Image in the original's key order, then our additions. */
export function toNative(r: ImageRecord): Record<string, unknown> {
  return {
    id: r.id,
    source: r.source,
    type: r.type,
    comment: r.comment,
    status: r.status,
    size: r.size,
    expected_size: r.expected_size,
    download_start: r.download_start,
    download_end: r.download_end,
    sha256: r.sha256,
    name: r.name,
    version: r.version,
    snapshot_guid: r.snapshot_guid,
    origin: r.origin,
    increment: r.increment,
    // '' for records stored before the service computed it.
    blake2b512: r.blake2b512,
    ...(r.error !== undefined ? { error: r.error } : {}),
  }
}

/** The original's HTTPError shape: 404, 405, 416 and 5xx. */
export function httpError(ctx: Koa.Context, status: number, message: string): void {
  ctx.status = status
  ctx.body = { message, code: status, stack: [] }
}

/** The original's input errors (400, 403, 409, 413): a bare message. */
export function jsonMsg(ctx: Koa.Context, status: number, message: string): void {
  ctx.status = status
  ctx.body = { message }
}

export function fail(ctx: Koa.Context, status: number, message: string): void {
  if (status === 400 || status === 403 || status === 409 || status === 413) jsonMsg(ctx, status, message)
  else httpError(ctx, status, message)
}
