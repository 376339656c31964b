/** The mistify-image-service API (wire spec §5) plus named versions; routes are listed in the README. */
import type Koa from 'koa'
import type { ServiceDeps } from '../app.js'
import { answerErrors } from '../http/errors.js'
import { readJson } from '../http/json.js'
import { createRouter, routed } from '../../common/router.js'
import { IMAGE_HEADER } from '../../common/image-headers.js'
import { bodyDigestHeaders, imageBlob, imageDigestHeaders, incrementBlob, sendImage, type BlobRef } from '../http/send-image.js'
import { BlobStoreError, IncompleteError, removeImageBlobs, TooLargeError } from '../store/blobs.js'
import { IncrementRefused, originOfMessage, storeIncrement } from '../store/increment.js'
import { asPending, ImageGoneError, ingest, StaleUploadError } from '../store/ingest.js'
import { isImageType, VersionTakenError, type ImageRecord } from '../store/store.js'
import { RetryableError } from '../store/records.js'
import { createKeyedLock } from '../../common/keyed-lock.js'
import { parseFetchRequest, parseUploadHeaders } from './validation.js'
import { fail, httpError, jsonMsg, toNative } from './view.js'

export function nativeApp(deps: ServiceDeps): Koa.Middleware[] {
  const { store, blobs, fetcher } = deps
  // POST's find-or-create by source must not race itself.
  const postLock = createKeyedLock()
  const router = createRouter()

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
    if (deps.redirectDownloads) {
      // Cluster mode: the bytes are fetched by their digest, a URL any HTTP cache
      // in front of the replicas may keep for good; this answer (id → digest) may
      // change, so it is not cached. Relative, so it stays on the client's front.
      ctx.set(IMAGE_HEADER.id, rec.id)
      ctx.set(imageDigestHeaders(rec))
      ctx.set('Cache-Control', 'no-store')
      ctx.redirect(`/blobs/sha256/${rec.sha256}`)
      ctx.status = 302
      return
    }
    await sendImage(ctx, blobs, imageBlob(rec), {
      fail,
      headers: {
        [IMAGE_HEADER.id]: rec.id,
        ...bodyDigestHeaders(rec),
        ...(rec.name !== '' ? { [IMAGE_HEADER.version]: String(rec.version) } : {}),
      },
    })
  }

  // Reachability of both stores, for a load balancer or an operator.
  router.get('/healthz', async (ctx) => {
    const probe = (p: Promise<void>): Promise<string> => p.then(() => 'ok', (err: unknown) => (err instanceof Error ? err.message : String(err)))
    const [metadata, blobStore] = await Promise.all([probe(store.backend.health()), probe(blobs.health())])
    ctx.status = metadata === 'ok' && blobStore === 'ok' ? 200 : 503
    ctx.body = { status: ctx.status === 200 ? 'ok' : 'unavailable', metadata: { backend: store.backend.kind, status: metadata }, blobs: { where: blobs.where, status: blobStore } }
  })

  router.get('/images', async (ctx) => {
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
  })

  router.put('/images', async (ctx) => {
    const up = parseUploadHeaders(ctx)
    if ('refused' in up) return jsonMsg(ctx, 400, up.refused)
    if (up.expectedSize > deps.maxUploadSize) {
      ctx.set('Connection', 'close')
      return jsonMsg(ctx, 413, new TooLargeError(deps.maxUploadSize).message)
    }
    let rec: ImageRecord
    try {
      rec = await store.create({ type: up.type, comment: up.comment, name: up.name, ...(up.version !== undefined ? { version: up.version } : {}) })
    } catch (err) {
      // Refused before a byte was read: close rather than drain the body.
      if (err instanceof VersionTakenError) { ctx.set('Connection', 'close'); return jsonMsg(ctx, 409, err.message) }
      throw err
    }
    try {
      const done = await ingest(deps, rec.id, ctx.req, {
        expectedSize: up.expectedSize, maxSize: deps.maxUploadSize, isComplete: () => ctx.req.complete, generation: rec.generation,
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
      // The body may be unread: close rather than drain it.
      if (err instanceof BlobStoreError) { ctx.set('Connection', 'close'); return jsonMsg(ctx, 503, `blob store unavailable: ${err.message}`) }
      // Metadata unavailable (etcd election): a retry will do; the body may be unread.
      if (err instanceof RetryableError) { ctx.set('Connection', 'close'); throw err }
      if (!ctx.req.complete) {
        // The client went away; nobody will read an answer.
        deps.log.warn({ id: rec.id }, 'upload aborted')
        return httpError(ctx, 400, 'upload aborted')
      }
      throw err
    }
  })

  router.post('/images', async (ctx) => {
    const req = parseFetchRequest(await readJson(ctx), deps)
    if ('refused' in req) return jsonMsg(ctx, 400, req.refused)
    const rec = await postLock.run('post', async () => {
      const existing = await store.findBySource(req.source)
      if (existing) {
        if (existing.status !== 'error' || fetcher.isRunning(existing.id)) return existing
        // Unlike the original, a failed fetch can be retried by POSTing it again.
        const reset = await store.update(existing.id, asPending)
        if (reset) fetcher.start(reset.id)
        return reset ?? existing
      }
      const created = await store.create(req)
      fetcher.start(created.id)
      return created
    })
    ctx.status = 202
    ctx.body = toNative(rec)
  })

  router.get('/images/by-name/:name', async (ctx) => {
    const all = await store.versions(ctx.params.name ?? '')
    if (all.length === 0) return httpError(ctx, 404, 'no image with that name')
    ctx.body = all.map(toNative)
  })

  router.get('/images/by-name/:name/latest', async (ctx) => {
    const rec = await store.latest(ctx.params.name ?? '')
    if (!rec) return httpError(ctx, 404, 'no complete image with that name')
    ctx.body = toNative(rec)
  })

  router.get('/images/by-name/:name/latest/download', async (ctx) => {
    const rec = await store.latest(ctx.params.name ?? '')
    if (!rec) return httpError(ctx, 404, 'no complete image with that name')
    await download(ctx, rec)
  })

  router.get('/images/:id', async (ctx) => {
    const rec = await requireImage(ctx, ctx.params.id ?? '')
    if (rec) ctx.body = toNative(rec)
  })

  router.delete('/images/:id', async (ctx) => {
    const rec = await requireImage(ctx, ctx.params.id ?? '')
    if (!rec) return
    if (rec.glance.protected) return jsonMsg(ctx, 403, 'image is protected')
    const dependents = await store.dependents(rec.id)
    if (dependents.length > 0) return jsonMsg(ctx, 409, originOfMessage(rec.id, dependents))
    fetcher.cancel(rec.id)
    const gone = await store.remove(rec.id, (last) => removeImageBlobs(blobs, last ?? rec))
    if (!gone) return notFound(ctx)
    ctx.body = toNative(gone)
  })

  router.get('/images/:id/download', async (ctx) => {
    const rec = await requireImage(ctx, ctx.params.id ?? '')
    if (rec) await download(ctx, rec)
  })

  // An increment from the image's origin (issue 16): the zfs send -i stream, checked against both records' snapshot guids.
  router.put('/images/:id/increment', async (ctx) => {
    const rec = await requireImage(ctx, ctx.params.id ?? '')
    if (!rec) return
    const lenHeader = ctx.get('content-length')
    const expectedSize = lenHeader === '' ? -1 : Number(lenHeader)
    if (expectedSize > deps.maxUploadSize) {
      ctx.set('Connection', 'close')
      return jsonMsg(ctx, 413, new TooLargeError(deps.maxUploadSize).message)
    }
    try {
      const linked = await storeIncrement(deps, rec.id, ctx.get(IMAGE_HEADER.origin), ctx.req, {
        expectedSize, maxSize: deps.maxUploadSize, isComplete: () => ctx.req.complete,
      })
      ctx.body = toNative(linked)
    } catch (err) {
      // Each of these may leave the body unread: close rather than drain it.
      ctx.set('Connection', 'close')
      if (err instanceof IncrementRefused) return fail(ctx, err.status, err.message)
      if (err instanceof TooLargeError) return jsonMsg(ctx, 413, err.message.replace(/^image/, 'increment'))
      if (err instanceof IncompleteError) return jsonMsg(ctx, 400, err.message)
      if (err instanceof BlobStoreError) return jsonMsg(ctx, 503, `blob store unavailable: ${err.message}`)
      if (err instanceof RetryableError) throw err
      if (!ctx.req.complete) {
        deps.log.warn({ id: rec.id }, 'increment upload aborted')
        return httpError(ctx, 400, 'upload aborted')
      }
      throw err
    }
  })

  router.get('/images/:id/increment', async (ctx) => {
    const rec = await requireImage(ctx, ctx.params.id ?? '')
    if (!rec) return
    const blob = rec.status === 'complete' ? incrementBlob(rec) : undefined
    if (!blob || !rec.increment) return httpError(ctx, 404, 'no increment')
    const headers = {
      [IMAGE_HEADER.id]: rec.id,
      ...imageDigestHeaders(blob),
      [IMAGE_HEADER.origin]: rec.origin,
      [IMAGE_HEADER.fromGuid]: rec.increment.from_guid,
      [IMAGE_HEADER.snapshotGuid]: rec.snapshot_guid,
    }
    if (deps.redirectDownloads) {
      // As the full download: the bytes by their digest, cacheable for good; this answer is not.
      ctx.set(headers)
      ctx.set('Cache-Control', 'no-store')
      ctx.redirect(`/blobs/sha256/${blob.sha256}`)
      ctx.status = 302
      return
    }
    await sendImage(ctx, blobs, blob, { fail, headers: { ...headers, ...bodyDigestHeaders(blob) } })
  })

  // Content-addressed and immutable: the same URL always names the same bytes, so any cache
  // (nginx in front of replicas, a client) may keep the answer for good.
  router.get('/blobs/sha256/:hex', async (ctx) => {
    const hex = ctx.params.hex ?? ''
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) return jsonMsg(ctx, 400, 'not a sha256: 64 hex digits expected')
    const sha256 = hex.toLowerCase()
    // An image's bytes or an increment's: both are blobs named by their digest.
    const candidates: BlobRef[] = []
    for (const r of await store.list()) {
      if (r.status !== 'complete') continue
      if (r.sha256 === sha256) candidates.push(imageBlob(r))
      if (r.increment?.sha256 === sha256) candidates.push(incrementBlob(r) as BlobRef)
    }
    if (candidates.length === 0) return httpError(ctx, 404, 'no complete image with that sha256')
    // Any blob with these bytes will do; prefer one that is there.
    let blob = candidates[0] as BlobRef
    for (const c of candidates) {
      if (await blobs.exists(c.key).catch(() => false)) { blob = c; break }
    }
    await sendImage(ctx, blobs, blob, {
      fail,
      headers: {
        'Cache-Control': 'public, max-age=31536000, immutable',
        ...bodyDigestHeaders(blob),
      },
    })
  })

  router.get('/metrics', async (ctx) => {
    if (!deps.metrics) return httpError(ctx, 404, 'no metrics in this service')
    ctx.type = deps.metrics.registry.contentType
    ctx.body = await deps.metrics.registry.metrics()
  })

  // The original's StrictSlash: a trailing slash redirects GET/HEAD and is dropped for the rest.
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
    answerErrors({ api: 'native API', log: deps.log, fail, internal: (err) => (err instanceof Error ? err.message : String(err)) }),
    strictSlash,
    ...routed(router, {
      notFound: (ctx) => httpError(ctx, 404, 'not found'),
      methodNotAllowed: (ctx) => httpError(ctx, 405, 'method not allowed'),
    }),
  ]
}
