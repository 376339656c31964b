/**
 * The fence: every dataset a request names is resolved here, relative to the
 * pool, and must lie inside <pool>/images or <pool>/guests. Syntax is checked
 * by zfs/names.ts before anything reaches zfs. The generic methods that change
 * something take `guestsOnly`: images and their snapshots change only through
 * the image methods, or a record could say `complete` for a snapshot that is
 * gone, and an image id could be taken by a stranger's volume.
 */
import { InvalidParamsError } from '../errors.js'
import { names } from '../../zfs/index.js'
import { DISK_IMAGE_SNAPSHOT } from '../import/import-image.js'
import { INCOMING_PREFIX } from '../catalog.js'

export interface FenceOptions {
  /** Refuse the trees' roots themselves (for destructive calls). */
  readonly below?: boolean
  /** Only names under <pool>/guests (for the generic methods that change something). */
  readonly guestsOnly?: boolean
}

export interface Scope {
  readonly pool: string
  readonly images: string
  readonly guests: string
  /**
   * `rel` is relative to the pool (`guests/<id>/disk-0@snap`). With
   * `below`, the trees' roots themselves are refused (for destructive calls).
   */
  resolve(rel: string, o?: FenceOptions): string
  /** A name that is already full (`<pool>/...`), fenced the same way. */
  check(full: string, o?: FenceOptions): string
  /** <pool>/images/<id> for an image id: one name component, not reserved, short enough for its temporaries. */
  imageDataset(id: string): string
  /** <pool>/guests/<id> for a guest id (a single name component). */
  guestDataset(id: string): string
}

export const INVALID_DATASET = 'not a valid dataset'

/**
 * Image ids may not start with this: the import's temporaries (`_incoming-`,
 * `_spool-`) live beside the images, and start-up removes them. An image
 * named like one would be destroyed as a leftover.
 */
export const RESERVED_IMAGE_PREFIX = '_'
/** The longest name an import derives from an id: `<pool>/images/_incoming-<id>@image`. */
const LONGEST_DERIVED = (images: string, id: string) => `${images}/${INCOMING_PREFIX}${id}@${DISK_IMAGE_SNAPSHOT}`.length

export function createScope(pool: string): Scope {
  names.assertPoolName(pool)
  const images = `${pool}/images`
  const guests = `${pool}/guests`

  function check(full: string, o: FenceOptions = {}): string {
    try {
      names.assertAnyName(full)
    } catch (e) {
      throw new InvalidParamsError(INVALID_DATASET, { cause: e })
    }
    const inside = [images, guests].find((root) => names.isWithin(full, root))
    if (!inside) throw new InvalidParamsError(`${INVALID_DATASET}: ${full} is outside ${images} and ${guests}`)
    if (o.guestsOnly && inside === images) {
      throw new InvalidParamsError(`${INVALID_DATASET}: ${full} is in ${images}; images change only through the image methods (RequestImage, DeleteImage)`)
    }
    const dataset = full.split('@')[0]!
    if (o.below && dataset === inside) throw new InvalidParamsError(`${INVALID_DATASET}: refusing to act on ${inside} itself`)
    return full
  }

  function component(id: string, what: string): string {
    if (typeof id !== 'string' || id.includes('/') || id.includes('@')) throw new InvalidParamsError(`invalid ${what} id ${JSON.stringify(id)}`)
    try {
      names.assertDatasetName(`${pool}/${id}`)
    } catch (e) {
      throw new InvalidParamsError(`invalid ${what} id ${JSON.stringify(id)}`, { cause: e })
    }
    return id
  }

  return {
    pool, images, guests, check,
    resolve(rel, o) {
      if (typeof rel !== 'string' || rel.startsWith('/')) throw new InvalidParamsError(`${INVALID_DATASET}: ids are relative to the pool, e.g. guests/<id>`)
      return check(`${pool}/${rel}`, o)
    },
    imageDataset(id) {
      component(id, 'image')
      if (id.startsWith(RESERVED_IMAGE_PREFIX)) throw new InvalidParamsError(`invalid image id ${JSON.stringify(id)}: ids starting with "${RESERVED_IMAGE_PREFIX}" are reserved for imports in progress`)
      if (LONGEST_DERIVED(images, id) > names.MAX_NAME_LENGTH) throw new InvalidParamsError(`invalid image id ${JSON.stringify(id)}: too long for ${images} (its import names ${images}/${INCOMING_PREFIX}<id>, at most ${names.MAX_NAME_LENGTH} characters with its snapshot)`)
      return `${images}/${id}`
    },
    guestDataset: (id) => `${guests}/${component(id, 'guest')}`,
  }
}
