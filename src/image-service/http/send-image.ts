/** Streaming an image's bytes: ETag / If-None-Match, one Range, If-Range. */
import type Koa from 'koa'
import type { ImageFiles } from '../store/files.js'
import type { ImageRecord } from '../store/store.js'
import { HttpError, type Fail } from './errors.js'
import { etagMatches, parseRange } from './conditional.js'

export interface SendOptions {
  /** Extra response headers (digests, ids). */
  headers?: Record<string, string>
  /** How to answer an error status (each API has its own error body). */
  fail: Fail
}

/**
 * Answer a complete image: 304 when If-None-Match matches, else 200, 206 or 416. The file is
 * opened before a status is chosen, so a missing file is an error, not an empty 200.
 */
export async function sendImage(ctx: Koa.Context, files: ImageFiles, rec: ImageRecord, o: SendOptions): Promise<void> {
  const etag = `"${rec.sha256}"`
  const common: Record<string, string> = {
    'Accept-Ranges': 'bytes',
    ETag: etag,
    ...(rec.download_end.startsWith('0001') ? {} : { 'Last-Modified': new Date(rec.download_end).toUTCString() }),
    ...o.headers,
  }
  if (etagMatches(ctx.get('if-none-match') || undefined, etag)) {
    ctx.set(common)
    ctx.status = 304
    return
  }
  const opened = await files.open(rec.id)
  if (!opened) {
    o.fail(ctx, 404, 'image data missing')
    return
  }
  const { handle, size } = opened
  try {
    if (size !== rec.size) throw new HttpError(500, `stored data is ${size} bytes, metadata says ${rec.size}`)
    const ifRange = ctx.get('if-range')
    const range = ifRange !== '' && ifRange !== etag ? { kind: 'full' as const } : parseRange(ctx.get('range') || undefined, size)
    if (range.kind === 'unsatisfiable') {
      await handle.close()
      ctx.set(common)
      ctx.set('Content-Range', `bytes */${size}`)
      o.fail(ctx, 416, 'range not satisfiable')
      return
    }
    const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, size - 1]
    ctx.set(common)
    ctx.type = 'application/octet-stream'
    if (range.kind === 'partial') {
      ctx.status = 206
      ctx.set('Content-Range', `bytes ${start}-${end}/${size}`)
    } else {
      ctx.status = 200
    }
    if (size === 0) {
      await handle.close()
      ctx.body = Buffer.alloc(0)
      return
    }
    // For HEAD, Koa sends the headers only and destroys the stream (closing the handle).
    const stream = handle.createReadStream({ start, end })
    // A read error after the headers went out cannot become a status: cut the
    // connection so the client sees a short body against Content-Length.
    stream.on('error', () => ctx.res.destroy())
    ctx.body = stream
    ctx.length = end - start + 1
  } catch (err) {
    await handle.close().catch(() => {})
    throw err
  }
}

/** sha256 hex → base64, for the Digest / Repr-Digest headers. */
export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64')
}
