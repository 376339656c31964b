/** Records as Glance images, and Glance's (webob) plain-text error bodies. The two views' mapping is in the README. */
import type Koa from 'koa'
import { HttpError } from '../http/errors.js'
import type { ImageRecord } from '../store/store.js'
import type { GLANCE_STATUSES } from './schema.js'

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

/**
 * Read-only custom properties that expose the native fields; strings (the schema's
 * additionalProperties) except mistify_increment_size, which the schema names as an integer.
 */
function mistifyProps(r: ImageRecord): Record<string, string | number> {
  return {
    mistify_type: r.type,
    ...(r.name !== '' ? { mistify_version: String(r.version) } : {}),
    ...(r.source !== '' ? { mistify_source: r.source } : {}),
    ...(r.comment !== '' ? { mistify_comment: r.comment } : {}),
    ...(r.error !== undefined ? { mistify_error: r.error } : {}),
    ...(r.snapshot_guid !== '' ? { mistify_snapshot_guid: r.snapshot_guid } : {}),
    ...(r.origin !== '' ? { mistify_origin: r.origin } : {}),
    ...(r.increment ? { mistify_increment_size: r.increment.size } : {}),
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
export function fail(ctx: Koa.Context, status: number, message: string): void {
  ctx.status = status
  ctx.type = 'text/plain'
  ctx.body = `${status} ${REASONS[status] ?? ''}\n\n${message}\n\n   `
}

export function bad(message: string): HttpError {
  return new HttpError(400, message)
}
