/** What a native request must carry: the fetch body of POST /images and the upload headers of PUT /images. */
import type Koa from 'koa'
import { checkUrl, type SourcePolicy } from '../../common/address-policy.js'
import { IMAGE_HEADER } from '../../common/image-headers.js'
import { isPlainObject } from '../../common/plain-object.js'
import { isImageType, validName, type ImageType } from '../store/store.js'

export interface FetchRequest {
  source: string
  type: ImageType
  comment: string
  name: string
}

export interface SourceRules {
  /** false: fetching from a URL is refused. */
  urlSources?: boolean | undefined
  sourcePolicy?: SourcePolicy | undefined
}

/** The request, or the 400 message that refuses it (checks in the order the original made them). */
export function parseFetchRequest(body: unknown, rules: SourceRules): FetchRequest | { refused: string } {
  if (!isPlainObject(body)) return { refused: 'request body must be a JSON object' }
  const { source, type, comment, name } = body
  if (typeof source !== 'string' || source === '') return { refused: 'missing image source' }
  if (!isImageType(type)) return { refused: 'invalid image type' }
  if (comment !== undefined && typeof comment !== 'string') return { refused: 'invalid comment' }
  if (name !== undefined && name !== '' && (typeof name !== 'string' || !validName(name))) return { refused: 'invalid name' }
  let url: URL | undefined
  try {
    url = new URL(source)
  } catch {
    url = undefined
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) return { refused: 'invalid image source' }
  if (rules.urlSources === false) return { refused: 'fetching images from a URL is disabled on this service (--url-sources off); upload the image instead' }
  // A literal address is judged now; a name when the fetch connects (the record then ends in error).
  const verdict = rules.sourcePolicy ? checkUrl(url, rules.sourcePolicy) : undefined
  if (verdict?.kind === 'denied') return { refused: `image source not allowed: ${verdict.reason} (allow it with --allow-source-hosts)` }
  return { source, type, comment: typeof comment === 'string' ? comment : '', name: typeof name === 'string' ? name : '' }
}

export interface UploadRequest {
  type: ImageType
  name: string
  /** X-Image-Version: the version a publisher chose; undefined: the next one. */
  version: number | undefined
  comment: string
  /** Content-Length, -1 when not announced. */
  expectedSize: number
}

/** PUT /images headers: X-Image-Type (required), X-Image-Name, X-Image-Version (with a name), X-Image-Comment. */
export function parseUploadHeaders(ctx: Koa.Context): UploadRequest | { refused: string } {
  const type = ctx.get(IMAGE_HEADER.type)
  if (!isImageType(type)) return { refused: `invalid ${IMAGE_HEADER.type} header` }
  const name = ctx.get(IMAGE_HEADER.name)
  if (name !== '' && !validName(name)) return { refused: `invalid ${IMAGE_HEADER.name} header` }
  const versionHeader = ctx.get(IMAGE_HEADER.version)
  let version: number | undefined
  if (versionHeader !== '') {
    if (name === '') return { refused: `${IMAGE_HEADER.version} needs an ${IMAGE_HEADER.name}` }
    version = /^[1-9]\d{0,14}$/.test(versionHeader) ? Number(versionHeader) : undefined
    if (version === undefined) return { refused: `invalid ${IMAGE_HEADER.version} header: a positive integer` }
  }
  const lenHeader = ctx.get('content-length')
  return { type, name, version, comment: ctx.get(IMAGE_HEADER.comment), expectedSize: lenHeader === '' ? -1 : Number(lenHeader) }
}
