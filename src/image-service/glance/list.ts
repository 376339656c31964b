/** GET /v2/images: filters, sort (sort_key/sort_dir or sort), and marker paging with limit. */
import type { ImageRecord } from '../store/store.js'
import { GLANCE_STATUSES, VISIBILITIES } from './schema.js'
import { bad, toGlance } from './view.js'

type SortKey = 'name' | 'status' | 'container_format' | 'disk_format' | 'size' | 'id' | 'created_at' | 'updated_at' | 'visibility' | 'min_disk' | 'min_ram'
const SORT_KEYS: readonly SortKey[] = ['name', 'status', 'container_format', 'disk_format', 'size', 'id', 'created_at', 'updated_at', 'visibility', 'min_disk', 'min_ram']
type Sort = Array<{ key: SortKey; dir: 1 | -1 }>

function parseSort(q: URLSearchParams): Sort {
  const dirOf = (d: string | undefined): 1 | -1 => {
    if (d === undefined || d === 'desc') return -1
    if (d === 'asc') return 1
    throw bad(`Invalid sort direction: ${d}`)
  }
  const keyOf = (k: string): SortKey => {
    if (!(SORT_KEYS as readonly string[]).includes(k)) throw bad(`Invalid sort key: ${k}`)
    return k as SortKey
  }
  const out: Sort = []
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

function comparator(sort: Sort): (a: Listed, b: Listed) => number {
  return (a, b) => {
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
}

/** The filters of the query: any key Glance does not name is a custom property to match. */
function filter(q: URLSearchParams): (x: Listed) => boolean {
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
  return ({ r, v }) => {
    if (status !== null && v.status !== status) return false
    if (visibility !== null && visibility !== 'all' && v.visibility !== visibility) return false
    if (r.glance.os_hidden !== hidden) return false
    if (q.has('protected') && String(r.glance.protected) !== q.get('protected')) return false
    for (const k of exact) if (q.has(k) && v[k] !== q.get(k)) return false
    if (sizeMin !== undefined && (typeof v.size !== 'number' || v.size < sizeMin)) return false
    if (sizeMax !== undefined && (typeof v.size !== 'number' || v.size > sizeMax)) return false
    if (!tags.every((t) => r.glance.tags.includes(t))) return false
    // mistify_increment_size is the one number among them; a query gives text.
    for (const k of custom) if ((typeof v[k] === 'number' ? String(v[k]) : v[k]) !== q.get(k)) return false
    return true
  }
}

/** The body of GET /v2/images for this query string. */
export function listImages(records: ImageRecord[], querystring: string): Record<string, unknown> {
  const q = new URLSearchParams(querystring)
  const limitRaw = q.get('limit')
  let limit = 25
  if (limitRaw !== null) {
    if (!/^\d+$/.test(limitRaw)) throw bad('limit param must be an integer')
    limit = Math.min(Number(limitRaw), 1000)
  }
  const cmp = comparator(parseSort(q))
  const views: Listed[] = records.map((r) => ({ r, v: toGlance(r) }))
  let list = views.filter(filter(q)).sort(cmp)

  const marker = q.get('marker')
  if (marker !== null) {
    const m = views.find(({ r }) => r.id === marker.toLowerCase())
    if (!m) throw bad(`Invalid marker. Image ${marker} could not be found.`)
    list = list.filter((x) => cmp(x, m) > 0)
  }
  const page = list.slice(0, limit).map(({ v }) => v)
  const params = new URLSearchParams(querystring)
  params.delete('marker')
  const qs = params.toString()
  const body: Record<string, unknown> = { images: page, first: `/v2/images${qs ? `?${qs}` : ''}`, schema: '/v2/schemas/images' }
  const last = page[page.length - 1]
  // Unlike Glance we only link a next page that exists.
  if (list.length > limit && last) {
    params.set('marker', String(last.id))
    body.next = `/v2/images?${params.toString()}`
  }
  return body
}
