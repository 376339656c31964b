/**
 * An image body over http(s), through the common client: here only the agent's
 * side of it, its error classes and texts (Go's among them) and the published digests.
 */
import { DIGEST_HEADER } from '../../common/image-headers.js'
import { headerDigest, type Published } from './digest.js'
import { InvalidParamsError, UpstreamError } from '../errors.js'
import { httpGet, httpGetResumable, HttpClientError, type GetOptions, type HttpResponse, type ResumableOptions } from '../../common/http-client.js'

export interface Source extends Omit<HttpResponse, 'status' | 'headers'> {
  /** The digests the answer published, when it did (the image service does). */
  readonly published: Published
}

export type OpenOptions = Omit<GetOptions, 'mapError' | 'headers' | 'ifRange'>

/** The client's failure as the agent's: a source the policy refuses is the caller's mistake, the rest the upstream's. */
export function upstreamError(e: HttpClientError): InvalidParamsError | UpstreamError {
  const d = e.detail
  switch (e.kind) {
    case 'denied': return new InvalidParamsError(e.message)
    case 'scheme': return new UpstreamError(`image source: will not follow a redirect to a ${new URL(e.url).protocol} URL`)
    case 'bad-redirect': return new UpstreamError(`image source ${origin(e.url)}: redirect to an invalid URL ${JSON.stringify(d.reason)}`)
    // Past the redirect limit, the redirect is the unexpected answer (as the agent always said).
    case 'status': case 'redirects': return new UpstreamError(`unexpected http response code: expected ${d.expected}, received ${d.status}, url: ${e.url}`)
    case 'content-range': return new UpstreamError(`image source ${e.url}: bad Content-Range ${JSON.stringify(d.reason)} for bytes ${d.bytes}-`)
    case 'network': return new UpstreamError(`fetching ${e.url}: ${d.reason}`, { cause: e.cause })
    case 'stalled': return new UpstreamError(`image source stalled for ${d.idleTimeoutMs} ms: ${e.url}`)
    case 'body': return new UpstreamError(`image source ${e.url}: ${d.reason} after ${d.bytes} bytes`, { cause: e.cause })
    case 'truncated': return new UpstreamError(`image source ${e.url}: connection closed early after ${d.bytes} bytes`)
    case 'short': return new UpstreamError(`image source ${e.url}: body ended after ${d.bytes} of ${d.size} bytes`)
    case 'changed': return new UpstreamError(`image source ${e.url}: the image changed while it was being fetched (${d.etags ? `ETag ${d.etags[0]} → ${d.etags[1]}` : d.reason}); not spliced in`)
    case 'resume': {
      const last = e.cause instanceof HttpClientError ? upstreamError(e.cause) : (e.cause as Error | undefined)
      // Each replica asked to resume, with its last failure (one URL: just that one, as always).
      const why = d.failures?.length ? d.failures.map((f) => upstreamError(f).message).join('; ') : last?.message ?? 'aborted'
      return new UpstreamError(`${upstreamError(d.interrupted!).message}; resuming at byte ${d.bytes} failed: ${why}`, { cause: last })
    }
    case 'replicas': return new UpstreamError(`image service: no replica answered: ${(d.failures ?? []).map((f) => upstreamError(f).message).join('; ')}`)
  }
}

function origin(url: string): string {
  const u = new URL(url)
  return `${u.protocol}//${u.host}`
}

function withDigest<R extends HttpResponse>(r: R): Omit<R, 'status' | 'headers'> & Source {
  const { status: _s, headers, ...rest } = r
  return { ...rest, published: { sha256: headerDigest(headers, 'sha256'), blake2b512: headerDigest(headers, 'blake2b512') } }
}

export async function openSource(url: string, o: OpenOptions): Promise<Source> {
  return withDigest(await httpGet(url, { ...o, mapError: upstreamError }))
}

export interface ResumableSource extends Source {
  /** How often a dropped connection was picked up again with a Range request. */
  resumes(): number
  /** Bytes delivered so far (each byte once, however many connections). */
  delivered(): number
  /** The URL whose bytes are being read now (a replica's, after a failover). */
  servedBy(): string
}

/**
 * An image body that survives dropped connections (Range resume); the
 * running `zfs receive` never notices. Several URLs: replicas of the image
 * service, tried in that order, a broken body resumed on the next one
 * (httpGetResumable); the published digests must agree between them.
 */
export async function openResumableSource(url: string | readonly string[], o: OpenOptions & Pick<ResumableOptions, 'maxResumes' | 'backoffMs'>): Promise<ResumableSource> {
  return withDigest(await httpGetResumable(url, { ...o, mapError: upstreamError, identityHeaders: Object.values(DIGEST_HEADER) })) // a resumed body must repeat the digests its first answer published
}
