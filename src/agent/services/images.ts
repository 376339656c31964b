/** ListImages, GetImage, RequestImage, DeleteImage, CloneImage. */
import { ConflictError, InvalidParamsError, NotFoundError } from '../errors.js'
import { parseDeclaredFormat } from '../import/payload.js'
import { imageWire, type WireImage, type WireVolume } from './shapes.js'
import { blankRecord, type ImageRecord } from '../catalog.js'
import { createImageFetch } from '../jobs/fetch-image.js'
import { cloneStrict, type Deps } from './deps.js'
import { assertGuestsRoom } from './disks.js'
import { DatasetNotFoundError, HasDependentClonesError, zvolPath } from '../../zfs/index.js'
import type { ImageRequest } from '../rpc/requests.js'

export type { ImageRequest }

const SHA256 = /^[0-9a-f]{64}$/

export function createImageService(d: Deps) {
  const { zfs, scope, records, fetches } = d
  const fetchImage = createImageFetch(d)
  // [] rather than the original's null when empty (its bug 12). One object per catalog state, so its encoding can be reused.
  const listed = records.memo((rs) => ({ images: rs.map(imageWire) }))
  // GetImage's answer: one object per record state (a write replaces the record object), so its encoding can be reused too.
  const answers = new WeakMap<ImageRecord, { images: WireImage[] }>()

  async function record(id: string): Promise<ImageRecord> {
    // An id that could never be an image name cannot be in the store either.
    const r = id ? await records.get(id) : undefined
    if (!r) throw new NotFoundError()
    return r
  }

  /** A complete image, or a clear error for one still on its way or failed. */
  async function usable(id: string): Promise<ImageRecord> {
    const r = await record(id)
    if (r.status !== 'complete') throw new ConflictError(`image ${id} is not ready (${r.status}${r.error ? `: ${r.error}` : ''})`)
    return r
  }

  /** A clone in the way of a delete, as a caller knows it: an image by id, a guest disk by its name. */
  function dependentName(ds: string): string {
    if (ds.startsWith(`${scope.images}/`)) return `image ${ds.slice(scope.images.length + 1)}`
    return ds.startsWith(`${scope.pool}/`) ? ds.slice(scope.pool.length + 1) : ds
  }

  return {
    listImages(): Promise<{ images: WireImage[] }> {
      return listed()
    },

    async getImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      const r = await record(p.id)
      let answer = answers.get(r)
      if (!answer) answers.set(r, (answer = { images: [imageWire(r)] }))
      return answer
    },

    /**
     * Complete already: answered from the record. Otherwise fetched (or the
     * running fetch joined); with `async` the pending record comes back at
     * once and GetImage/ListImages show how it goes.
     */
    async requestImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      if (!p.id) throw new InvalidParamsError('need id')
      scope.imageDataset(p.id) // the id becomes a dataset name: check it first
      const format = parseDeclaredFormat(p.format)
      const sha256 = p.sha256 ? p.sha256.toLowerCase() : undefined
      if (sha256 !== undefined && !SHA256.test(sha256)) throw new InvalidParamsError('sha256: 64 hex digits')
      const have = await records.get(p.id)
      if (have?.status === 'complete') return { images: [imageWire(have)] }
      const joining = fetches.has(p.id) && (have?.status === 'pending' || have?.status === 'downloading')
      const job = fetchImage(p.id, p.source ?? '', p.async === true, format, sha256) // throws at once when not admitted
      if (p.async) {
        job.catch(() => {}) // the outcome lands in the record
        return { images: [imageWire(joining ? have : blankRecord(p.id, p.source ?? '', 'pending'))] }
      }
      return { images: [imageWire(await job)] }
    },

    async deleteImage(p: ImageRequest, signal?: AbortSignal): Promise<{ images: WireImage[] }> {
      const r = await record(p.id)
      if (fetches.has(r.id)) throw new ConflictError(`image ${r.id} is being fetched; delete it when the fetch has ended`)
      const volume = r.volume ? scope.check(r.volume, { below: true }) : undefined
      // One recursive destroy takes the snapshot too, and zfs refuses it whole
      // while guest disks or images (increments) are cloned from the image: nothing half deleted.
      try {
        if (volume && (await zfs.findDataset(volume, { signal }))) await zfs.destroy(volume, { recursive: true }, { signal })
      } catch (e) {
        if (!(e instanceof HasDependentClonesError) || e.dependents.length === 0) throw e
        throw new HasDependentClonesError(`${e.message}: ${e.dependents.map(dependentName).join(', ')}`, e.command, { cause: e })
      }
      await records.del(r.id)
      return { images: [imageWire(r)] }
    },

    async cloneImage(p: ImageRequest, signal?: AbortSignal): Promise<{ volumes: WireVolume[] }> {
      if (!p.dest) throw new InvalidParamsError('need dest')
      const r = await usable(p.id)
      // dest: a full name under <pool>/ as the original took it verbatim, or relative like every other id.
      // Only under guests/: a volume in images/ would take an image id's place.
      const fence = { below: true, guestsOnly: true }
      const dest = p.dest.startsWith(`${scope.pool}/`) ? scope.check(p.dest, fence) : scope.resolve(p.dest, fence)
      if (dest.includes('@')) throw new InvalidParamsError('dest must name a volume, not a snapshot')
      // The space check VerifyDisks makes: a clone may grow to the image's size.
      await assertGuestsRoom(d, r.size, signal)
      // The clone itself is one zfs command in the usual case: the record names
      // the snapshot, and a clone is as big as its origin, so neither needs looking up.
      try {
        await cloneStrict(zfs, scope.check(r.snapshot), dest, { signal })
      } catch (e) {
        // The record's snapshot vanished behind our back (its parent always exists: it is the image).
        if (e instanceof DatasetNotFoundError) throw new NotFoundError('not found', { cause: e })
        throw e
      }
      return { volumes: [{ id: dest, size: r.size, device: zvolPath(dest) }] }
    },
  }
}
