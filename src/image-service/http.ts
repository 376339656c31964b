/**
 * HTTP helpers shared by both APIs: a tiny method+path router (no router
 * package), JSON body reading with a size cap, single-range parsing,
 * ETag/If-None-Match, and streaming an image's bytes with those applied.
 */
import type Koa from 'koa'
import type { ImageFiles } from './files.js'
import type { ImageRecord } from './store.js'

export type Params = Record<string, string>
export type Handler = (ctx: Koa.Context, params: Params) => Promise<void> | void

export interface Route {
  method: string
  /** Literal segments and `:name` captures, e.g. `/images/:id/download`. */
  path: string
  handler: Handler
}

/** An error that carries the status the API should answer with. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

/** Percent-decode one path segment; undefined when malformed. */
function decodeSegment(s: string): string | undefined {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

export interface RouterOptions {
  notFound: (ctx: Koa.Context) => void
  methodNotAllowed: (ctx: Koa.Context, allow: string[]) => void
}

/**
 * Match ctx.path against the routes. Segments are compared after decoding, so
 * a name may contain an encoded `/` (%2F). HEAD is served by GET routes (Koa
 * drops the body).
 */
export function router(routes: Route[], o: RouterOptions): Koa.Middleware {
  const compiled = routes.map((r) => ({ ...r, segs: r.path.split('/').slice(1) }))
  return async (ctx) => {
    const raw = ctx.path.split('/').slice(1)
    const segs = raw.map(decodeSegment)
    const allow = new Set<string>()
    for (const r of compiled) {
      if (r.segs.length !== segs.length) continue
      const params: Params = {}
      let ok = true
      for (let i = 0; i < r.segs.length && ok; i++) {
        const want = r.segs[i] as string
        const got = segs[i]
        if (got === undefined) ok = false
        else if (want.startsWith(':')) params[want.slice(1)] = got
        else ok = want === got
      }
      if (!ok) continue
      const method = ctx.method === 'HEAD' ? 'GET' : ctx.method
      if (r.method === method) {
        await r.handler(ctx, params)
        return
      }
      allow.add(r.method)
      if (r.method === 'GET') allow.add('HEAD')
    }
    if (allow.size > 0) o.methodNotAllowed(ctx, [...allow])
    else o.notFound(ctx)
  }
}

/** Read and parse a JSON request body of at most `limit` bytes. */
export async function readJson(ctx: Koa.Context, limit = 1 << 20): Promise<unknown> {
  const len = Number(ctx.get('content-length') || '0')
  if (len > limit) throw new HttpError(413, `request body exceeds ${limit} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of ctx.req) {
    const b = c as Buffer
    size += b.length
    if (size > limit) throw new HttpError(413, `request body exceeds ${limit} bytes`)
    chunks.push(b)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new HttpError(400, err instanceof Error ? err.message : 'invalid JSON')
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export type RangeResult =
  | { kind: 'full' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' }

/**
 * One `bytes=` range (RFC 9110 §14.1.2). Anything we do not serve as one range
 * (multiple ranges, other units, bad syntax) yields the full body, which the
 * RFC allows.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined || header === '') return { kind: 'full' }
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (!m) return { kind: 'full' }
  const [, a = '', b = ''] = m
  if (a === '' && b === '') return { kind: 'full' }
  if (a === '') {
    // Suffix range: the last N bytes.
    const n = Number(b)
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  if (b !== '' && Number(b) < start) return { kind: 'full' }
  if (start >= size) return { kind: 'unsatisfiable' }
  return { kind: 'partial', start, end }
}

/** Does an If-None-Match header match this (strong) ETag? Weak comparison, as RFC 9110 asks. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  const bare = etag.replace(/^W\//, '')
  return header.split(',').some((t) => {
    const v = t.trim()
    return v === '*' || v.replace(/^W\//, '') === bare
  })
}

export interface SendOptions {
  /** Extra response headers (digests, ids). */
  headers?: Record<string, string>
  /** How to answer an error status (each API has its own error body). */
  fail: (ctx: Koa.Context, status: number, message: string) => void
}

/**
 * Stream a complete image's bytes with Content-Length, ETag (the sha256),
 * If-None-Match → 304, Range → 206/416 and If-Range. The file is opened
 * before any status is chosen, so a missing file is an error, not an empty 200.
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
