/**
 * Which digest an import is checked against, decided before any byte is fetched or any
 * dataset made: integrity fails closed. The README's "Integrity" section says why BLAKE2b.
 */
import { DIGEST_HEADER, type DigestAlgorithm } from '../../common/image-headers.js'
import { UpstreamError } from '../errors.js'

/** The digests a source published (X-Image-Sha256, X-Image-Blake2b512), lower-case hex. */
export interface Published {
  readonly sha256: string | undefined
  readonly blake2b512: string | undefined
}

/** What the bytes as served must hash to. */
export interface ExpectedDigest {
  readonly algorithm: DigestAlgorithm
  readonly hex: string
  /** The sha256 the record shows: the checked one, or the one published beside the BLAKE2b. */
  readonly sha256: string | undefined
}

const SHAPE: Readonly<Record<DigestAlgorithm, RegExp>> = { sha256: /^[0-9a-f]{64}$/, blake2b512: /^[0-9a-f]{128}$/ }

/** A digest header's value as published (lower-cased), or undefined when absent. */
export function headerDigest(headers: Readonly<Record<string, string | string[] | undefined>>, algorithm: DigestAlgorithm): string | undefined {
  const v = headers[DIGEST_HEADER[algorithm].toLowerCase()]
  return typeof v === 'string' ? v.toLowerCase() : undefined
}

/**
 * `pinned`: the caller's own sha256 (a `source` it names must come with one). The caller trusts
 * that digest, not the server: only it is checked, whatever else the server publishes. Unpinned,
 * from the image service: its BLAKE2b when published (the same bytes, for a fraction of the CPU),
 * else its sha256; with neither, refused unless the operator accepts undigested images. A
 * published sha256 must agree with the pinned one, and with the one the image service's record
 * gives (`recorded`: an increment's, from the lineage).
 */
export function expectedDigest(id: string, o: {
  pinned: string | undefined
  recorded?: string | undefined
  published: Published
  fromImageService: boolean
  acceptUndigested: boolean
}): ExpectedDigest | undefined {
  const { pinned, recorded } = o
  // A malformed digest is refused before any byte is fetched; one that is not used is not read.
  const shaped = (a: DigestAlgorithm): string | undefined => {
    const v = o.published[a]
    if (v !== undefined && !SHAPE[a].test(v)) throw new UpstreamError(`image ${id}: the source's ${DIGEST_HEADER[a]} is not a ${a} digest: ${JSON.stringify(v.slice(0, 140))}`)
    return v
  }
  const published = shaped('sha256')
  if (pinned && published && pinned !== published) {
    throw new UpstreamError(`image ${id}: the source publishes sha256 ${published}, the request says ${pinned}`)
  }
  if (recorded && published && recorded !== published) {
    throw new UpstreamError(`image ${id}: the source publishes sha256 ${published}, the image service's record says ${recorded}`)
  }
  if (pinned) return { algorithm: 'sha256', hex: pinned, sha256: pinned }
  const sha256 = published ?? recorded
  const blake2b512 = o.fromImageService ? shaped('blake2b512') : undefined
  if (blake2b512) return { algorithm: 'blake2b512', hex: blake2b512, sha256 }
  if (sha256) return { algorithm: 'sha256', hex: sha256, sha256 }
  if (o.fromImageService && o.acceptUndigested) return undefined
  throw new UpstreamError(o.fromImageService
    ? `image ${id}: the image service published no sha256 (${DIGEST_HEADER.sha256}), and unverified images are refused (acceptUndigestedImages is off)`
    : `image ${id}: no sha256 to verify it against`)
}
