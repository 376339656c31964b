/** Streaming an image's bytes: ETag / If-None-Match, one Range, If-Range. */
import type Koa from 'koa'
import { DIGEST_HEADER } from '../../common/image-headers.js'
import { incrementKey, type BlobStore } from '../store/blobs.js'
import type { ImageRecord } from '../store/store.js'
import { HttpError, type Fail } from './errors.js'
import { etagMatches, parseRange } from './conditional.js'

/** One blob to send: its key in the blob store and what the record says of it. */
export interface BlobRef {
  key: string
  sha256: string
  /** '' or absent when the record predates it. */
  blake2b512?: string | undefined
  size: number
  /** When it was stored (ISO); Go's zero time when unknown. */
  stored: string
  /** Names it in errors ("image <id>", "increment of image <id>"). */
  what: string
}

/** A complete image's own bytes. */
export function imageBlob(rec: ImageRecord): BlobRef {
  return { key: rec.id, sha256: rec.sha256, blake2b512: rec.blake2b512, size: rec.size, stored: rec.download_end, what: `image ${rec.id}` }
}

/** An image's increment, when it has one (its record's update time is when it was linked). */
export function incrementBlob(rec: ImageRecord): BlobRef | undefined {
  if (!rec.increment) return undefined
  const { sha256, blake2b512, size } = rec.increment
  return { key: incrementKey(rec.id, sha256), sha256, blake2b512, size, stored: rec.updated_at, what: `the increment of image ${rec.id}` }
}

export interface SendOptions {
  /** Extra response headers (digests, ids). */
  headers?: Record<string, string>
  /** How to answer an error status (each API has its own error body). */
  fail: Fail
}

/**
 * Answer a complete image's (or increment's) bytes: 304 when If-None-Match matches, else 200, 206 or 416. The blob is
 * opened, and its bytes requested, before a status is chosen: a missing blob or an unreachable
 * store is an error status with a message, never an empty or truncated 200.
 */
export async function sendImage(ctx: Koa.Context, blobs: BlobStore, blob: BlobRef, o: SendOptions): Promise<void> {
  const etag = `"${blob.sha256}"`
  const common: Record<string, string> = {
    'Accept-Ranges': 'bytes',
    ETag: etag,
    ...(blob.stored.startsWith('0001') ? {} : { 'Last-Modified': new Date(blob.stored).toUTCString() }),
    ...o.headers,
  }
  if (etagMatches(ctx.get('if-none-match') || undefined, etag)) {
    ctx.set(common)
    ctx.status = 304
    return
  }
  const opened = await storeCall(() => blobs.open(blob.key))
  if (!opened) throw new HttpError(500, `${blob.what} is complete but its data is missing from the blob store`)
  let streamed = false
  try {
    const { size } = opened
    if (size !== blob.size) throw new HttpError(500, `stored data of ${blob.what} is ${size} bytes, metadata says ${blob.size}`)
    const ifRange = ctx.get('if-range')
    const range = ifRange !== '' && ifRange !== etag ? { kind: 'full' as const } : parseRange(ctx.get('range') || undefined, size)
    if (range.kind === 'unsatisfiable') {
      ctx.set(common)
      ctx.set('Content-Range', `bytes */${size}`)
      o.fail(ctx, 416, 'range not satisfiable')
      return
    }
    const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, size - 1]
    // HEAD needs no bytes: the store is not asked for them (for S3 that would be a GET).
    const stream = size === 0 || ctx.method === 'HEAD' ? undefined : await storeCall(() => { streamed = true; return opened.stream(start, end) })
    ctx.set(common)
    ctx.type = 'application/octet-stream'
    if (range.kind === 'partial') {
      ctx.status = 206
      ctx.set('Content-Range', `bytes ${start}-${end}/${size}`)
    } else {
      ctx.status = 200
    }
    if (size === 0) {
      ctx.body = Buffer.alloc(0)
      return
    }
    if (!stream) {
      ctx.length = end - start + 1
      return
    }
    // A read error after the headers went out cannot become a status: cut the
    // connection so the client sees a short body against Content-Length.
    stream.on('error', () => ctx.res.destroy())
    ctx.body = stream
    ctx.length = end - start + 1
  } finally {
    if (!streamed) await opened.close().catch(() => {})
  }
}

/** A store that cannot be reached (or refuses) is a 503 with its reason, not a bare 500. */
async function storeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof HttpError) throw err
    throw new HttpError(503, `blob store unavailable: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/**
 * The digests an agent checks a download against: X-Image-Sha256 (the blob's name) and, when
 * stored, X-Image-Blake2b512, which agents prefer (the same assurance for far less CPU).
 * Also on a redirect to the blob, so a client knows what to expect before it follows.
 */
export function imageDigestHeaders(blob: Pick<BlobRef, 'sha256' | 'blake2b512'>): Record<string, string> {
  return { [DIGEST_HEADER.sha256]: blob.sha256, ...(blob.blake2b512 ? { [DIGEST_HEADER.blake2b512]: blob.blake2b512 } : {}) }
}

/** The above with RFC 9530's Repr-Digest (and the older Digest): on the bytes' own answer only. */
export function bodyDigestHeaders(blob: Pick<BlobRef, 'sha256' | 'blake2b512'>): Record<string, string> {
  const b64 = Buffer.from(blob.sha256, 'hex').toString('base64')
  return { ...imageDigestHeaders(blob), Digest: `sha-256=${b64}`, 'Repr-Digest': `sha-256=:${b64}:` }
}
