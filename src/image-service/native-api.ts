/**
 * The mistify-image-service API (wire spec §5), plus named versions.
 *
 * Routes:
 *   GET    /images[?type=kvm|container]             list (JSON array, [] when empty)
 *   PUT    /images                                  upload raw bytes; headers X-Image-Type (required),
 *                                                   X-Image-Comment, X-Image-Name → 200 final record
 *   POST   /images                                  fetch {"source","type","comment"?,"name"?} in the
 *                                                   background → 202 record (pending → downloading →
 *                                                   complete | error); same source in `error` is retried
 *   GET    /images/by-name/{name}                   every version of a name, oldest first
 *   GET    /images/by-name/{name}/latest            newest complete version's record
 *   GET    /images/by-name/{name}/latest/download   newest complete version's bytes
 *   GET    /images/{id}                             record
 *   DELETE /images/{id}                             delete data and record → 200 deleted record
 *   GET    /images/{id}/download                    bytes (Range, ETag, If-None-Match, X-Image-Sha256)
 * `{name}` is one path segment, percent-decoded (so `%2F` may appear in a name).
 * A trailing slash redirects (GET/HEAD, 301) as the original's StrictSlash did.
 *
 * Error bodies as the original: 404/405/416/5xx are HTTPError
 * {"message","code","stack":[]}, input errors (400/403/413) are {"message"}.
 */
import type Koa from 'koa'
import type { ServiceDeps } from './app.js'
import { IncompleteError, TooLargeError } from './files.js'
import { HttpError, hexToBase64, isPlainObject, readJson, router, sendImage, type Route } from './http.js'
import { asPending, ImageGoneError, ingest, StaleUploadError } from './ingest.js'
import { checkUrl } from '../common/address-policy.js'
import { isImageType, type ImageRecord } from './store.js'

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
    ...(r.error !== undefined ? { error: r.error } : {}),
  }
}

/** Names are free text (shared with Glance) but bounded and without control characters. */
export function validName(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return s.length >= 1 && s.length <= 255 && !/[\u0000-\u001f\u007f]/.test(s)
}

function httpError(ctx: Koa.Context, status: number, message: string): void {
  ctx.status = status
  ctx.body = { message, code: status, stack: [] }
}

function jsonMsg(ctx: Koa.Context, status: number, message: string): void {
  ctx.status = status
  ctx.body = { message }
}

function fail(ctx: Koa.Context, status: number, message: string): void {
  if (status === 400 || status === 403 || status === 409 || status === 413) jsonMsg(ctx, status, message)
  else httpError(ctx, status, message)
}

/** Serialises a section (POST's find-or-create by source must not race itself). */
function mutex(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve()
  return (fn) => {
    const next = tail.then(fn, fn)
    tail = next.catch(() => {})
    return next
  }
}

export function nativeApp(deps: ServiceDeps): Koa.Middleware[] {
  const { store, files, fetcher } = deps
  const postLock = mutex()

  const notFound = (ctx: Koa.Context): void => httpError(ctx, 404, 'image not found')

  async function requireImage(ctx: Koa.Context, id: string): Promise<ImageRecord | undefined> {
    const rec = await store.get(id)
    if (!rec) notFound(ctx)
    return rec
  }

  async function download(ctx: Koa.Context, rec: ImageRecord): Promise<void> {
    if (rec.status !== 'complete') {
      httpError(ctx, 404, 'incomplete image')
      return
    }
    const b64 = hexToBase64(rec.sha256)
    await sendImage(ctx, files, rec, {
      fail,
      headers: {
        'X-Image-Id': rec.id,
        'X-Image-Sha256': rec.sha256,
        Digest: `sha-256=${b64}`,
        'Repr-Digest': `sha-256=:${b64}:`,
        ...(rec.name !== '' ? { 'X-Image-Version': String(rec.version) } : {}),
      },
    })
  }

  const routes: Route[] = [
    {
      method: 'GET', path: '/images', handler: async (ctx) => {
        const q = ctx.query.type
        const type = Array.isArray(q) ? q[0] : q
        const all = await store.list()
        // As the original: only a letters-only value filters; anything else lists everything.
        if (type !== undefined && /^[a-zA-Z]+$/.test(type)) {
          if (!isImageType(type)) return jsonMsg(ctx, 400, 'invalid type')
          ctx.body = all.filter((r) => r.type === type).map(toNative)
          return
        }
        ctx.body = all.map(toNative)
      },
    },
    {
      method: 'PUT', path: '/images', handler: async (ctx) => {
        const type = ctx.get('x-image-type')
        if (!isImageType(type)) return jsonMsg(ctx, 400, 'invalid X-Image-Type header')
        const name = ctx.get('x-image-name')
        if (name !== '' && !validName(name)) return jsonMsg(ctx, 400, 'invalid X-Image-Name header')
        const lenHeader = ctx.get('content-length')
        const expectedSize = lenHeader === '' ? -1 : Number(lenHeader)
        if (expectedSize > deps.maxUploadSize) {
          ctx.set('Connection', 'close')
          return jsonMsg(ctx, 413, new TooLargeError(deps.maxUploadSize).message)
        }
        const rec = await store.create({ type, comment: ctx.get('x-image-comment'), name })
        try {
          const done = await ingest(deps, rec.id, ctx.req, {
            expectedSize, maxSize: deps.maxUploadSize, isComplete: () => ctx.req.complete, generation: rec.generation,
          })
          ctx.body = toNative(done)
        } catch (err) {
          if (err instanceof TooLargeError) {
            // We stop reading mid-body: close the connection rather than drain it.
            ctx.set('Connection', 'close')
            return jsonMsg(ctx, 413, err.message)
          }
          if (err instanceof IncompleteError) return jsonMsg(ctx, 400, err.message)
          if (err instanceof ImageGoneError) return httpError(ctx, 404, 'image deleted during upload')
          if (err instanceof StaleUploadError) return jsonMsg(ctx, 409, err.message)
          if (!ctx.req.complete) {
            // The client went away; nobody will read an answer.
            deps.log.warn('upload aborted', { id: rec.id })
            return httpError(ctx, 400, 'upload aborted')
          }
          throw err
        }
      },
    },
    {
      method: 'POST', path: '/images', handler: async (ctx) => {
        const body = await readJson(ctx)
        if (!isPlainObject(body)) return jsonMsg(ctx, 400, 'request body must be a JSON object')
        const { source, type, comment, name } = body
        if (typeof source !== 'string' || source === '') return jsonMsg(ctx, 400, 'missing image source')
        if (!isImageType(type)) return jsonMsg(ctx, 400, 'invalid image type')
        if (comment !== undefined && typeof comment !== 'string') return jsonMsg(ctx, 400, 'invalid comment')
        if (name !== undefined && name !== '' && (typeof name !== 'string' || !validName(name))) return jsonMsg(ctx, 400, 'invalid name')
        let url: URL | undefined
        try {
          url = new URL(source)
        } catch {
          url = undefined
        }
        if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) return jsonMsg(ctx, 400, 'invalid image source')
        if (deps.urlSources === false) return jsonMsg(ctx, 400, 'fetching images from a URL is disabled on this service (--url-sources off); upload the image instead')
        // A literal address is judged now; a name when the fetch connects (the record then ends in error).
        const verdict = deps.sourcePolicy ? checkUrl(url, deps.sourcePolicy) : undefined
        if (verdict?.kind === 'denied') return jsonMsg(ctx, 400, `image source not allowed: ${verdict.reason} (allow it with --allow-source-hosts)`)

        const rec = await postLock(async () => {
          const existing = await store.findBySource(source)
          if (existing) {
            if (existing.status !== 'error' || fetcher.isRunning(existing.id)) return existing
            // Unlike the original, a failed fetch can be retried by POSTing it again.
            const reset = await store.update(existing.id, asPending)
            if (reset) fetcher.start(reset.id)
            return reset ?? existing
          }
          const created = await store.create({
            source, type, comment: typeof comment === 'string' ? comment : '', name: typeof name === 'string' ? name : '',
          })
          fetcher.start(created.id)
          return created
        })
        ctx.status = 202
        ctx.body = toNative(rec)
      },
    },
    {
      method: 'GET', path: '/images/by-name/:name', handler: async (ctx, p) => {
        const all = await store.versions(p.name ?? '')
        if (all.length === 0) return httpError(ctx, 404, 'no image with that name')
        ctx.body = all.map(toNative)
      },
    },
    {
      method: 'GET', path: '/images/by-name/:name/latest', handler: async (ctx, p) => {
        const rec = await store.latest(p.name ?? '')
        if (!rec) return httpError(ctx, 404, 'no complete image with that name')
        ctx.body = toNative(rec)
      },
    },
    {
      method: 'GET', path: '/images/by-name/:name/latest/download', handler: async (ctx, p) => {
        const rec = await store.latest(p.name ?? '')
        if (!rec) return httpError(ctx, 404, 'no complete image with that name')
        await download(ctx, rec)
      },
    },
    {
      method: 'GET', path: '/images/:id', handler: async (ctx, p) => {
        const rec = await requireImage(ctx, p.id ?? '')
        if (rec) ctx.body = toNative(rec)
      },
    },
    {
      method: 'DELETE', path: '/images/:id', handler: async (ctx, p) => {
        const rec = await requireImage(ctx, p.id ?? '')
        if (!rec) return
        if (rec.glance.protected) return jsonMsg(ctx, 403, 'image is protected')
        fetcher.cancel(rec.id)
        const gone = await store.remove(rec.id, () => files.remove(rec.id))
        if (!gone) return notFound(ctx)
        ctx.body = toNative(gone)
      },
    },
    {
      method: 'GET', path: '/images/:id/download', handler: async (ctx, p) => {
        const rec = await requireImage(ctx, p.id ?? '')
        if (rec) await download(ctx, rec)
      },
    },
  ]

  const errors: Koa.Middleware = async (ctx, next) => {
    try {
      await next()
    } catch (err) {
      if (err instanceof HttpError) {
        ctx.set(err.headers)
        if (err.status === 413) ctx.set('Connection', 'close')
        return fail(ctx, err.status, err.message)
      }
      deps.log.error('native API request failed', { method: ctx.method, path: ctx.path, err: String(err) })
      httpError(ctx, 500, err instanceof Error ? err.message : String(err))
    }
  }

  const strictSlash: Koa.Middleware = async (ctx, next) => {
    if (ctx.path.length > 1 && ctx.path.endsWith('/')) {
      const bare = ctx.path.replace(/\/+$/, '') || '/'
      if (ctx.method === 'GET' || ctx.method === 'HEAD') {
        ctx.status = 301
        ctx.redirect(bare + (ctx.querystring ? `?${ctx.querystring}` : ''))
        return
      }
      ctx.path = bare
    }
    await next()
  }

  return [
    errors,
    strictSlash,
    router(routes, {
      notFound: (ctx) => httpError(ctx, 404, 'not found'),
      methodNotAllowed: (ctx, allow) => {
        ctx.set('Allow', allow.join(', '))
        httpError(ctx, 405, 'method not allowed')
      },
    }),
  ]
}
