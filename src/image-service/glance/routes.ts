/** A subset of the OpenStack Image API v2 (Glance) over the native records; routes are listed in the README. */
import { randomUUID } from 'node:crypto'
import type Koa from 'koa'
import type { ServiceDeps } from '../app.js'
import { answerErrors, HttpError } from '../http/errors.js'
import { readJson } from '../http/json.js'
import { isPlainObject } from '../../common/plain-object.js'
import { createRouter, routed } from '../../common/router.js'
import { imageBlob, sendImage } from '../http/send-image.js'
import { BlobStoreError, IncompleteError, removeImageBlobs, TooLargeError } from '../store/blobs.js'
import { originOfMessage } from '../store/increment.js'
import { ImageGoneError, ingest, StaleUploadError } from '../store/ingest.js'
import { isImageId, type ImageRecord } from '../store/store.js'
import { RetryableError } from '../store/records.js'
import { listImages } from './list.js'
import { applyPatch, newEditable, setProp, typeFor } from './properties.js'
import { imageSchema, imagesSchema } from './schema.js'
import { bad, fail, glanceStatus, toGlance } from './view.js'

const PATCH_TYPES = ['application/openstack-images-v2.1-json-patch', 'application/openstack-images-v2.0-json-patch']

export function glanceApp(deps: ServiceDeps): Koa.Middleware[] {
  const { store, blobs, fetcher } = deps
  const router = createRouter()

  async function requireImage(id: string): Promise<ImageRecord> {
    const rec = await store.get(id)
    if (!rec) throw new HttpError(404, `No image found with ID ${id}`)
    return rec
  }

  function versions(ctx: Koa.Context): Record<string, unknown> {
    const href = `${ctx.protocol}://${ctx.host}/v2/`
    // We claim 2.5 at most: later versions add interoperable import and
    // multi-store, which this subset does not serve.
    const ids = ['v2.5', 'v2.4', 'v2.3', 'v2.2', 'v2.1', 'v2.0']
    return { versions: ids.map((id, i) => ({ id, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href }] })) }
  }

  router.get('/versions', (ctx) => { ctx.body = versions(ctx) })
  router.get('/', (ctx) => { ctx.status = 300; ctx.body = versions(ctx) })
  router.get('/v2/schemas/image', (ctx) => { ctx.body = imageSchema() })
  router.get('/v2/schemas/images', (ctx) => { ctx.body = imagesSchema() })

  router.get('/v2/images', async (ctx) => {
    ctx.body = listImages(await store.list(), ctx.querystring)
  })

  router.post('/v2/images', async (ctx) => {
    const body = await readJson(ctx)
    if (!isPlainObject(body)) throw bad('Request body must be a JSON object')
    const e = newEditable()
    let id: string | undefined
    for (const [k, v] of Object.entries(body)) {
      if (k === 'id') {
        if (typeof v !== 'string' || !isImageId(v)) throw bad("Invalid value for 'id': must be a UUID")
        id = v.toLowerCase()
        continue
      }
      setProp(e, k, v)
    }
    if (id !== undefined && (await store.get(id))) throw new HttpError(409, `Image with identifier ${id} already exists!`)
    const rec = await store.create({ ...(id !== undefined ? { id } : {}), type: typeFor(e.glance, 'kvm'), name: e.name, glance: e.glance })
    ctx.status = 201
    ctx.set('Location', `/v2/images/${rec.id}`)
    ctx.body = toGlance(rec)
  })

  router.get('/v2/images/:id', async (ctx) => {
    ctx.body = toGlance(await requireImage(ctx.params.id ?? ''))
  })

  router.patch('/v2/images/:id', async (ctx) => {
    const id = ctx.params.id ?? ''
    const ct = ctx.get('content-type').split(';')[0]?.trim().toLowerCase()
    if (ct === undefined || !PATCH_TYPES.includes(ct)) {
      throw new HttpError(415, `Unsupported Content-Type ${ct ?? ''}; use application/openstack-images-v2.1-json-patch`)
    }
    await requireImage(id)
    const ops = await readJson(ctx)
    if (!Array.isArray(ops)) throw bad('Request body must be a JSON array of operation objects.')
    const updated = await store.update(id, (r) => {
      const e = { name: r.name, glance: r.glance }
      applyPatch(e, ops, glanceStatus(r) === 'queued')
      return { ...r, name: e.name, type: typeFor(e.glance, r.type), glance: e.glance }
    })
    if (!updated) throw new HttpError(404, `No image found with ID ${id}`)
    ctx.body = toGlance(updated)
  })

  router.delete('/v2/images/:id', async (ctx) => {
    const rec = await requireImage(ctx.params.id ?? '')
    if (rec.glance.protected) throw new HttpError(403, `Image ${rec.id} is protected and cannot be deleted.`)
    const dependents = await store.dependents(rec.id)
    if (dependents.length > 0) throw new HttpError(409, originOfMessage(rec.id, dependents))
    fetcher.cancel(rec.id)
    await store.remove(rec.id, (last) => removeImageBlobs(blobs, last ?? rec))
    ctx.status = 204
  })

  router.put('/v2/images/:id/file', async (ctx) => {
    const ct = ctx.get('content-type').split(';')[0]?.trim().toLowerCase() ?? ''
    if (ct !== '' && ct !== 'application/octet-stream') throw new HttpError(415, `Content-Type must be application/octet-stream, not ${ct}`)
    const rec = await requireImage(ctx.params.id ?? '')
    if (rec.glance.disk_format === null || rec.glance.container_format === null) {
      throw bad('Properties disk_format, container_format must be set prior to saving data.')
    }
    const lenHeader = ctx.get('content-length')
    const sizeHeader = ctx.get('x-openstack-image-size')
    if (lenHeader !== '' && Number(lenHeader) > deps.maxUploadSize) throw new HttpError(413, new TooLargeError(deps.maxUploadSize).message)
    if (sizeHeader !== '' && !/^\d+$/.test(sizeHeader)) throw bad('x-openstack-image-size must be an integer')
    // Claim the image atomically: only a queued image takes data, and only once.
    let claimed = false
    let generation: string | undefined
    await store.update(rec.id, (r) => {
      if (glanceStatus(r) !== 'queued') return undefined
      claimed = true
      generation = r.generation
      return { ...r, status: 'downloading' }
    })
    if (!claimed) throw new HttpError(409, `Image status transition from ${glanceStatus(rec)} to saving is not allowed`)
    const expectedSize = sizeHeader !== '' ? Number(sizeHeader) : lenHeader !== '' ? Number(lenHeader) : -1
    try {
      // Tied to the record this request claimed: if it is deleted and created again meanwhile, this upload is dropped.
      await ingest(deps, rec.id, ctx.req, { expectedSize, maxSize: deps.maxUploadSize, isComplete: () => ctx.req.complete, generation })
    } catch (err) {
      if (err instanceof TooLargeError) throw new HttpError(413, err.message)
      if (err instanceof IncompleteError) throw bad(err.message)
      if (err instanceof ImageGoneError) throw new HttpError(404, `Image ${rec.id} was deleted during upload`)
      if (err instanceof StaleUploadError) throw new HttpError(409, err.message)
      if (err instanceof BlobStoreError) { ctx.set('Connection', 'close'); throw new HttpError(503, `blob store unavailable: ${err.message}`) }
      if (err instanceof RetryableError) { ctx.set('Connection', 'close'); throw err }
      if (!ctx.req.complete) throw bad('upload aborted')
      throw err
    }
    ctx.status = 204
  })

  router.get('/v2/images/:id/file', async (ctx) => {
    const rec = await requireImage(ctx.params.id ?? '')
    if (rec.status !== 'complete') {
      ctx.status = 204
      return
    }
    await sendImage(ctx, blobs, imageBlob(rec), { fail, headers: { 'Content-MD5': rec.md5 } })
  })

  router.put('/v2/images/:id/tags/:tag', async (ctx) => {
    const id = ctx.params.id ?? ''
    const tag = ctx.params.tag ?? ''
    if (tag === '' || tag.length > 255) throw bad('Invalid tag')
    const r = await store.update(id, (x) => (x.glance.tags.includes(tag) ? undefined : { ...x, glance: { ...x.glance, tags: [...x.glance.tags, tag] } }))
    if (!r) throw new HttpError(404, `No image found with ID ${id}`)
    ctx.status = 204
  })

  router.delete('/v2/images/:id/tags/:tag', async (ctx) => {
    const tag = ctx.params.tag ?? ''
    const before = await requireImage(ctx.params.id ?? '')
    if (!before.glance.tags.includes(tag)) throw new HttpError(404, `Tag ${tag} not found`)
    await store.update(before.id, (x) => ({ ...x, glance: { ...x.glance, tags: x.glance.tags.filter((t) => t !== tag) } }))
    ctx.status = 204
  })

  // Glance answers every request with a request id; clients log and forward it.
  const requestId: Koa.Middleware = async (ctx, next) => {
    ctx.set('x-openstack-request-id', `req-${randomUUID()}`)
    await next()
  }

  return [
    requestId,
    answerErrors({ api: 'glance API', log: deps.log, fail, internal: () => 'The server has either erred or is incapable of performing the requested operation.' }),
    ...routed(router, {
      notFound: (ctx) => fail(ctx, 404, 'The resource could not be found.'),
      methodNotAllowed: (ctx) => fail(ctx, 405, 'The method specified is not allowed for this resource.'),
    }),
  ]
}
