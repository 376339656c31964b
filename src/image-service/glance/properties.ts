/** Which image properties a create or a PATCH may set, and how each is validated. */
import { HttpError } from '../http/errors.js'
import { isPlainObject } from '../../common/plain-object.js'
import { validName, type GlanceFields, type ImageType, type Visibility } from '../store/store.js'
import { CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES } from './schema.js'
import { bad } from './view.js'

const READ_ONLY = new Set(['id', 'status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size', 'created_at',
  'updated_at', 'self', 'file', 'schema', 'direct_url', 'locations', 'stores'])
const BASE = new Set(['name', 'visibility', 'protected', 'os_hidden', 'tags', 'min_disk', 'min_ram', 'disk_format', 'container_format', 'owner'])

function readOnly(key: string): boolean {
  return READ_ONLY.has(key) || key.startsWith('mistify_') || key.startsWith('os_glance')
}

/** Working copy of the fields a create or PATCH may change. */
export interface Editable {
  name: string
  glance: GlanceFields
}

/** What POST /v2/images starts from: unlike a native image, no formats yet. */
export function newEditable(): Editable {
  return {
    name: '',
    glance: {
      visibility: 'shared', protected: false, disk_format: null, container_format: null, min_disk: 0, min_ram: 0,
      tags: [], owner: null, os_hidden: false, properties: {},
    },
  }
}

/** Set one property after validating it (shared by create and PATCH). */
export function setProp(e: Editable, key: string, value: unknown): void {
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

/**
 * Apply a json-patch (application/openstack-images-v2.1-json-patch): add, replace, remove, one
 * level deep. Formats change only while the image is queued.
 */
export function applyPatch(e: Editable, ops: unknown[], queued: boolean): void {
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
}

/** container_format `docker` is a native container image; any other set format is kvm. */
export function typeFor(g: GlanceFields, current: ImageType): ImageType {
  if (g.container_format === 'docker') return 'container'
  if (g.container_format !== null) return 'kvm'
  return current
}
