/**
 * A subset of the OpenStack Image API v2 (Glance) over the same records as
 * the native API, so standard OpenStack clients can manage our images.
 *
 * Routes:
 *   GET    /versions, GET /                  API versions (200; `/` answers 300 as Glance does)
 *   GET    /v2/schemas/image | images        JSON schemas (clients validate against them)
 *   GET    /v2/images                        list: limit, marker, sort_key/sort_dir or sort, filters
 *                                            name, status, visibility, tag, owner, checksum, os_hash_value,
 *                                            disk_format, container_format, size_min, size_max, protected,
 *                                            os_hidden, and any other key = custom property
 *   POST   /v2/images                        create a record (201, status queued)
 *   GET    /v2/images/{id}                   image
 *   PATCH  /v2/images/{id}                   application/openstack-images-v2.1-json-patch; add/replace/remove
 *   DELETE /v2/images/{id}                   204 (403 when protected)
 *   PUT    /v2/images/{id}/file              upload (204): queued → saving → active, killed on failure
 *   GET    /v2/images/{id}/file              data (200, 206 for Range, 204 when there is none)
 *   PUT    /v2/images/{id}/tags/{tag}        add a tag (204)
 *   DELETE /v2/images/{id}/tags/{tag}        remove a tag (204)
 * No authentication: X-Auth-Token is accepted and ignored.
 *
 * Mapping between the two views of one record:
 *   native status pending     → queued   (importing when it has a source, i.e. a URL fetch)
 *                 downloading → saving   (importing when it has a source)
 *                 complete    → active
 *                 error       → killed
 *   native type: container_format `docker` ⇔ type `container`; anything else is type `kvm`.
 *   Native uploads get disk_format `raw` and container_format `bare` (kvm) or `docker` (container).
 *   Native name/version are Glance's name and the read-only property `mistify_version`;
 *   type, source, comment and error appear as read-only `mistify_*` properties.
 *   checksum = md5 and os_hash_algo/os_hash_value = sha512, both over the stored bytes, as Glance
 *   computes them (the native API shows the sha256); all three are computed in one pass on upload.
 */
import { randomUUID } from 'node:crypto'
import type Koa from 'koa'
import type { ServiceDeps } from './app.js'
import { IncompleteError, TooLargeError } from './files.js'
import { CONTAINER_FORMATS, DISK_FORMATS, GLANCE_STATUSES, VISIBILITIES, imageSchema, imagesSchema } from './glance-schema.js'
import { HttpError, isPlainObject, readJson, router, sendImage, type Route } from './http.js'
import { ImageGoneError, ingest, StaleUploadError } from './ingest.js'
import { validName } from './native-api.js'
import { isImageId, type GlanceFields, type ImageRecord, type Visibility } from './store.js'

type GlanceStatus = (typeof GLANCE_STATUSES)[number]

export function glanceStatus(r: ImageRecord): GlanceStatus {
  switch (r.status) {
    case 'pending': return r.source !== '' ? 'importing' : 'queued'
    case 'downloading': return r.source !== '' ? 'importing' : 'saving'
    case 'complete': return 'active'
    case 'error': return 'killed'
  }
}

/** Glance shows timestamps without fractional seconds. */
function glanceTime(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z')
}

/** Read-only custom properties that expose the native fields. */
function mistifyProps(r: ImageRecord): Record<string, string> {
  return {
    mistify_type: r.type,
    ...(r.name !== '' ? { mistify_version: String(r.version) } : {}),
    ...(r.source !== '' ? { mistify_source: r.source } : {}),
    ...(r.comment !== '' ? { mistify_comment: r.comment } : {}),
    ...(r.error !== undefined ? { mistify_error: r.error } : {}),
  }
}

export function toGlance(r: ImageRecord): Record<string, unknown> {
  const active = r.status === 'complete'
  const g = r.glance
  return {
    ...g.properties,
    ...mistifyProps(r),
    id: r.id,
    name: r.name === '' ? null : r.name,
    status: glanceStatus(r),
    visibility: g.visibility,
    protected: g.protected,
    os_hidden: g.os_hidden,
    checksum: active ? r.md5 : null,
    os_hash_algo: active ? 'sha512' : null,
    os_hash_value: active ? r.sha512 : null,
    size: active ? r.size : null,
    virtual_size: null,
    disk_format: g.disk_format,
    container_format: g.container_format,
    min_disk: g.min_disk,
    min_ram: g.min_ram,
    tags: g.tags,
    owner: g.owner,
    created_at: glanceTime(r.created_at),
    updated_at: glanceTime(r.updated_at),
    self: `/v2/images/${r.id}`,
    file: `/v2/images/${r.id}/file`,
    schema: '/v2/schemas/image',
  }
}

const REASONS: Record<number, string> = {
  300: 'Multiple Choices', 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  409: 'Conflict', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type', 416: 'Requested Range Not Satisfiable',
  500: 'Internal Server Error',
}

/** Glance (webob) error bodies are plain text: "404 Not Found\n\n<explanation>\n\n   ". */
function fail(ctx: Koa.Context, status: number, message: string): void {
  ctx.status = status
  ctx.type = 'text/plain'
  ctx.body = `${status} ${REASONS[status] ?? ''}\n\n${message}\n\n   `
}

const READ_ONLY = new Set(['id', 'status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size', 'created_at',
  'updated_at', 'self', 'file', 'schema', 'direct_url', 'locations', 'stores'])
const BASE = new Set(['name', 'visibility', 'protected', 'os_hidden', 'tags', 'min_disk', 'min_ram', 'disk_format', 'container_format', 'owner'])

function readOnly(key: string): boolean {
  return READ_ONLY.has(key) || key.startsWith('mistify_') || key.startsWith('os_glance')
}

function bad(message: string): HttpError {
  return new HttpError(400, message)
}

/** Working copy of the fields a create or PATCH may change. */
interface Editable {
  name: string
  glance: GlanceFields
}

/** Set one property after validating it (shared by create and PATCH). */
function setProp(e: Editable, key: string, value: unknown): void {
  if (readOnly(key)) throw new HttpError(403, `Attribute '${key}' is read-only.`)
  const g = e.glance
  const nonNegInt = (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw bad(`Invalid value for '${key}': must be a non-negative integer`)
    return v
  }
  const bool = (v: unknown): boolean => {
    if (typeof v !== 'boolean') throw bad(`Invalid value for '${key}': must be a boolean`)
    return v
  }
  const oneOf = (v: unknown, allowed: readonly string[]): string | null => {
    if (v === null) return null
    if (typeof v !== 'string' || !allowed.includes(v)) throw bad(`Invalid value '${String(v)}' for '${key}': must be one of ${allowed.join(', ')}`)
    return v
  }
  switch (key) {
    case 'name':
      // null clears the name; otherwise the same rule as native names.
      if (value !== null && (typeof value !== 'string' || (value !== '' && !validName(value)))) throw bad("Invalid value for 'name'")
      e.name = value ?? ''
      return
    case 'visibility': {
      const v = oneOf(value, VISIBILITIES)
      if (v === null) throw bad("Invalid value for 'visibility'")
      g.visibility = v as Visibility
      return
    }
    case 'protected': g.protected = bool(value); return
    case 'os_hidden': g.os_hidden = bool(value); return
    case 'min_disk': g.min_disk = nonNegInt(value); return
    case 'min_ram': g.min_ram = nonNegInt(value); return
    case 'disk_format': g.disk_format = oneOf(value, DISK_FORMATS); return
    case 'container_format': g.container_format = oneOf(value, CONTAINER_FORMATS); return
    case 'owner':
      if (value !== null && (typeof value !== 'string' || value.length > 255)) throw bad("Invalid value for 'owner'")
      g.owner = value
      return
    case 'tags':
      if (!Array.isArray(value) || !value.every((t): t is string => typeof t === 'string' && t.length <= 255 && t !== '')) {
        throw bad("Invalid value for 'tags': must be a list of strings")
      }
      g.tags = [...new Set(value)]
      return
    default:
      if (key === '' || key.length > 255) throw bad(`Invalid property name '${key}'`)
      if (typeof value !== 'string' || value.length > 65535) throw bad(`Invalid value for '${key}': custom properties are strings`)
      g.properties[key] = value
  }
}

/** Undo a property (PATCH remove): base properties go back to their defaults. */
function removeProp(e: Editable, key: string): void {
  if (readOnly(key)) throw new HttpError(403, `Attribute '${key}' is read-only.`)
  const g = e.glance
  switch (key) {
    case 'name': e.name = ''; return
    case 'visibility': g.visibility = 'shared'; return
    case 'protected': g.protected = false; return
    case 'os_hidden': g.os_hidden = false; return
    case 'min_disk': g.min_disk = 0; return
    case 'min_ram': g.min_ram = 0; return
    case 'disk_format': g.disk_format = null; return
    case 'container_format': g.container_format = null; return
    case 'owner': g.owner = null; return
    case 'tags': g.tags = []; return
    default:
      if (!(key in g.properties)) throw new HttpError(409, `Property ${key} does not exist.`)
      delete g.properties[key]
  }
}

/** container_format `docker` is a native container image; any other set format is kvm. */
function typeFor(g: GlanceFields, current: 'kvm' | 'container'): 'kvm' | 'container' {
  if (g.container_format === 'docker') return 'container'
  if (g.container_format !== null) return 'kvm'
  return current
}

type SortKey = 'name' | 'status' | 'container_format' | 'disk_format' | 'size' | 'id' | 'created_at' | 'updated_at' | 'visibility' | 'min_disk' | 'min_ram'
const SORT_KEYS: readonly SortKey[] = ['name', 'status', 'container_format', 'disk_format', 'size', 'id', 'created_at', 'updated_at', 'visibility', 'min_disk', 'min_ram']

function parseSort(q: URLSearchParams): Array<{ key: SortKey; dir: 1 | -1 }> {
  const dirOf = (d: string | undefined): 1 | -1 => {
    if (d === undefined || d === 'desc') return -1
    if (d === 'asc') return 1
    throw bad(`Invalid sort direction: ${d}`)
  }
  const keyOf = (k: string): SortKey => {
    if (!(SORT_KEYS as readonly string[]).includes(k)) throw bad(`Invalid sort key: ${k}`)
    return k as SortKey
  }
  const out: Array<{ key: SortKey; dir: 1 | -1 }> = []
  const sort = q.get('sort')
  if (sort !== null) {
    if (q.has('sort_key') || q.has('sort_dir')) throw bad("The 'sort' argument is not supported with 'sort_key' or 'sort_dir'.")
    for (const part of sort.split(',')) {
      const [k = '', d] = part.trim().split(':')
      out.push({ key: keyOf(k.trim()), dir: dirOf(d?.trim()) })
    }
  } else {
    const keys = q.getAll('sort_key')
    const dirs = q.getAll('sort_dir')
    if (dirs.length > 1 && dirs.length !== keys.length) throw bad('Number of sort dirs does not match the number of sort keys')
    if (keys.length === 0 && dirs.length > 0) keys.push('created_at')
    keys.forEach((k, i) => out.push({ key: keyOf(k), dir: dirOf(dirs.length === 1 ? dirs[0] : dirs[i]) }))
  }
  if (out.length === 0) out.push({ key: 'created_at', dir: -1 })
  // Tie-breakers make the order total, which marker paging needs.
  const lastDir = out[out.length - 1]?.dir ?? -1
  for (const key of ['created_at', 'id'] as const) if (!out.some((s) => s.key === key)) out.push({ key, dir: lastDir })
  return out
}

interface Listed {
  r: ImageRecord
  v: Record<string, unknown>
}

/** Timestamps sort at full precision (the view shows whole seconds only). */
function sortValue({ r, v }: Listed, key: SortKey): string | number | null {
  if (key === 'created_at' || key === 'updated_at') return r[key]
  const x = v[key]
  return typeof x === 'string' || typeof x === 'number' ? x : null
}

export function glanceApp(deps: ServiceDeps): Koa.Middleware[] {
  const { store, files, fetcher } = deps

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

  const routes: Route[] = [
    { method: 'GET', path: '/versions', handler: (ctx) => { ctx.body = versions(ctx) } },
    { method: 'GET', path: '/', handler: (ctx) => { ctx.status = 300; ctx.body = versions(ctx) } },
    { method: 'GET', path: '/v2/schemas/image', handler: (ctx) => { ctx.body = imageSchema() } },
    { method: 'GET', path: '/v2/schemas/images', handler: (ctx) => { ctx.body = imagesSchema() } },
    {
      method: 'GET', path: '/v2/images', handler: async (ctx) => {
        const q = new URLSearchParams(ctx.querystring)
        const limitRaw = q.get('limit')
        let limit = 25
        if (limitRaw !== null) {
          if (!/^\d+$/.test(limitRaw)) throw bad('limit param must be an integer')
          limit = Math.min(Number(limitRaw), 1000)
        }
        const sort = parseSort(q)
        const views: Listed[] = (await store.list()).map((r) => ({ r, v: toGlance(r) }))
        const cmp = (a: Listed, b: Listed): number => {
          for (const { key, dir } of sort) {
            const x = sortValue(a, key)
            const y = sortValue(b, key)
            if (x === y) continue
            if (x === null) return -dir
            if (y === null) return dir
            return (x < y ? -1 : 1) * dir
          }
          return 0
        }

        const status = q.get('status')
        if (status !== null && !(GLANCE_STATUSES as readonly string[]).includes(status)) throw bad(`Invalid status value: ${status}`)
        const visibility = q.get('visibility')
        if (visibility !== null && visibility !== 'all' && !(VISIBILITIES as readonly string[]).includes(visibility)) throw bad(`Invalid visibility value: ${visibility}`)
        const num = (k: string): number | undefined => {
          const s = q.get(k)
          if (s === null) return undefined
          if (!/^\d+$/.test(s)) throw bad(`Invalid value for ${k}`)
          return Number(s)
        }
        const sizeMin = num('size_min')
        const sizeMax = num('size_max')
        const tags = q.getAll('tag')
        const hidden = q.get('os_hidden') === 'true'
        const exact = ['name', 'owner', 'checksum', 'os_hash_value', 'disk_format', 'container_format']
        const skip = new Set(['limit', 'marker', 'sort', 'sort_key', 'sort_dir', 'status', 'visibility', 'size_min', 'size_max',
          'tag', 'os_hidden', 'member_status', 'protected', ...exact])
        const custom = [...new Set(q.keys())].filter((k) => !skip.has(k))

        let list = views.filter(({ r, v }) => {
          if (status !== null && v.status !== status) return false
          if (visibility !== null && visibility !== 'all' && v.visibility !== visibility) return false
          if (r.glance.os_hidden !== hidden) return false
          if (q.has('protected') && String(r.glance.protected) !== q.get('protected')) return false
          for (const k of exact) if (q.has(k) && v[k] !== q.get(k)) return false
          if (sizeMin !== undefined && (typeof v.size !== 'number' || v.size < sizeMin)) return false
          if (sizeMax !== undefined && (typeof v.size !== 'number' || v.size > sizeMax)) return false
          if (!tags.every((t) => r.glance.tags.includes(t))) return false
          for (const k of custom) if (v[k] !== q.get(k)) return false
          return true
        }).sort(cmp)

        const marker = q.get('marker')
        if (marker !== null) {
          const m = views.find(({ r }) => r.id === marker.toLowerCase())
          if (!m) throw bad(`Invalid marker. Image ${marker} could not be found.`)
          list = list.filter((x) => cmp(x, m) > 0)
        }
        const page = list.slice(0, limit).map(({ v }) => v)
        const params = new URLSearchParams(ctx.querystring)
        params.delete('marker')
        const qs = params.toString()
        const body: Record<string, unknown> = { images: page, first: `/v2/images${qs ? `?${qs}` : ''}`, schema: '/v2/schemas/images' }
        const last = page[page.length - 1]
        // Unlike Glance we only link a next page that exists.
        if (list.length > limit && last) {
          params.set('marker', String(last.id))
          body.next = `/v2/images?${params.toString()}`
        }
        ctx.body = body
      },
    },
    {
      method: 'POST', path: '/v2/images', handler: async (ctx) => {
        const body = await readJson(ctx)
        if (!isPlainObject(body)) throw bad('Request body must be a JSON object')
        const e: Editable = {
          name: '',
          glance: {
            visibility: 'shared', protected: false, disk_format: null, container_format: null, min_disk: 0, min_ram: 0,
            tags: [], owner: null, os_hidden: false, properties: {},
          },
        }
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
      },
    },
    {
      method: 'GET', path: '/v2/images/:id', handler: async (ctx, p) => {
        ctx.body = toGlance(await requireImage(p.id ?? ''))
      },
    },
    {
      method: 'PATCH', path: '/v2/images/:id', handler: async (ctx, p) => {
        const ct = ctx.get('content-type').split(';')[0]?.trim().toLowerCase()
        if (ct !== 'application/openstack-images-v2.1-json-patch' && ct !== 'application/openstack-images-v2.0-json-patch') {
          throw new HttpError(415, `Unsupported Content-Type ${ct ?? ''}; use application/openstack-images-v2.1-json-patch`)
        }
        await requireImage(p.id ?? '')
        const ops = await readJson(ctx)
        if (!Array.isArray(ops)) throw bad('Request body must be a JSON array of operation objects.')
        const updated = await store.update(p.id ?? '', (r) => {
          const e: Editable = { name: r.name, glance: r.glance }
          const queued = glanceStatus(r) === 'queued'
          for (const op of ops) {
            if (!isPlainObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string') throw bad('Operations must be JSON objects with "op" and "path".')
            // One level only: "/name", "/tags", "/my_property" (JSON pointer escapes ~0 ~1).
            const m = /^\/([^/]+)$/.exec(op.path)
            if (!m) throw bad(`Invalid JSON pointer for this resource: '${op.path}'`)
            const key = (m[1] ?? '').replace(/~1/g, '/').replace(/~0/g, '~')
            if ((key === 'disk_format' || key === 'container_format') && !queued && !readOnly(key)) {
              throw new HttpError(403, `Attribute ${key} can be only replaced for a queued image.`)
            }
            switch (op.op) {
              case 'add':
                if (!('value' in op)) throw bad('Operation "add" requires a "value".')
                setProp(e, key, op.value)
                break
              case 'replace':
                if (!('value' in op)) throw bad('Operation "replace" requires a "value".')
                if (!BASE.has(key) && !readOnly(key) && !(key in e.glance.properties)) throw new HttpError(409, `Property ${key} does not exist.`)
                setProp(e, key, op.value)
                break
              case 'remove':
                removeProp(e, key)
                break
              default:
                throw bad(`Operation "${op.op}" is not supported; use add, replace or remove.`)
            }
          }
          return { ...r, name: e.name, type: typeFor(e.glance, r.type), glance: e.glance }
        })
        if (!updated) throw new HttpError(404, `No image found with ID ${p.id ?? ''}`)
        ctx.body = toGlance(updated)
      },
    },
    {
      method: 'DELETE', path: '/v2/images/:id', handler: async (ctx, p) => {
        const rec = await requireImage(p.id ?? '')
        if (rec.glance.protected) throw new HttpError(403, `Image ${rec.id} is protected and cannot be deleted.`)
        fetcher.cancel(rec.id)
        await store.remove(rec.id, () => files.remove(rec.id))
        ctx.status = 204
      },
    },
    {
      method: 'PUT', path: '/v2/images/:id/file', handler: async (ctx, p) => {
        const ct = ctx.get('content-type').split(';')[0]?.trim().toLowerCase() ?? ''
        if (ct !== '' && ct !== 'application/octet-stream') throw new HttpError(415, `Content-Type must be application/octet-stream, not ${ct}`)
        const rec = await requireImage(p.id ?? '')
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
          if (!ctx.req.complete) throw bad('upload aborted')
          throw err
        }
        ctx.status = 204
      },
    },
    {
      method: 'GET', path: '/v2/images/:id/file', handler: async (ctx, p) => {
        const rec = await requireImage(p.id ?? '')
        if (rec.status !== 'complete') {
          ctx.status = 204
          return
        }
        await sendImage(ctx, files, rec, { fail, headers: { 'Content-MD5': rec.md5 } })
      },
    },
    {
      method: 'PUT', path: '/v2/images/:id/tags/:tag', handler: async (ctx, p) => {
        const tag = p.tag ?? ''
        if (tag === '' || tag.length > 255) throw bad('Invalid tag')
        const r = await store.update(p.id ?? '', (x) => (x.glance.tags.includes(tag) ? undefined : { ...x, glance: { ...x.glance, tags: [...x.glance.tags, tag] } }))
        if (!r) throw new HttpError(404, `No image found with ID ${p.id ?? ''}`)
        ctx.status = 204
      },
    },
    {
      method: 'DELETE', path: '/v2/images/:id/tags/:tag', handler: async (ctx, p) => {
        const tag = p.tag ?? ''
        const before = await requireImage(p.id ?? '')
        if (!before.glance.tags.includes(tag)) throw new HttpError(404, `Tag ${tag} not found`)
        await store.update(before.id, (x) => ({ ...x, glance: { ...x.glance, tags: x.glance.tags.filter((t) => t !== tag) } }))
        ctx.status = 204
      },
    },
  ]

  const common: Koa.Middleware = async (ctx, next) => {
    // Glance answers every request with a request id; clients log and forward it.
    ctx.set('x-openstack-request-id', `req-${randomUUID()}`)
    try {
      await next()
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.status === 413) ctx.set('Connection', 'close')
        return fail(ctx, err.status, err.message)
      }
      deps.log.error('glance API request failed', { method: ctx.method, path: ctx.path, err: String(err) })
      fail(ctx, 500, 'The server has either erred or is incapable of performing the requested operation.')
    }
  }

  return [
    common,
    router(routes, {
      notFound: (ctx) => fail(ctx, 404, 'The resource could not be found.'),
      methodNotAllowed: (ctx, allow) => {
        ctx.set('Allow', allow.join(', '))
        fail(ctx, 405, 'The method specified is not allowed for this resource.')
      },
    }),
  ]
}
