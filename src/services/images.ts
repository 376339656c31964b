/** ListImages, GetImage, RequestImage, DeleteImage, CloneImage. */
import { InvalidParamsError, NotFoundError } from '../errors.js'
import { openResumableSource } from '../fetch/http-source.js'
import { importImage } from '../fetch/import-image.js'
import { getExisting } from './lookup.js'
import { imageWire, toMiB, volumeWire, type ImageRecord, type WireImage, type WireVolume } from './shapes.js'
import { cloneStrict, type Deps } from './deps.js'

export interface ImageRequest { id: string; type: string; dest: string; source: string }

export function createImageService(d: Deps) {
  const { zfs, scope, records, fetches } = d

  async function record(id: string): Promise<ImageRecord> {
    // An id that could never be an image name cannot be in the store either.
    const r = id ? await records.get(id) : undefined
    if (!r) throw new NotFoundError()
    return r
  }

  async function fetchImage(id: string): Promise<ImageRecord> {
    const url = `${d.config.imageServer}/images/${encodeURIComponent(id)}/download`
    return fetches.run(id, async (signal) => {
      const src = await openResumableSource(url, { signal, idleTimeoutMs: d.config.fetchIdleTimeoutMs })
      const got = await importImage({
        zfs, imagesRoot: scope.images, id, body: src.body, signal, expectedSha256: src.sha256, expectedBytes: src.size,
      })
      const rec: ImageRecord = {
        id, type: '', volume: got.volume, snapshot: got.snapshot, size: toMiB(got.volsize), status: 'complete',
        source: url, sha256: got.sha256,
      }
      await records.put(id, rec)
      return rec
    })
  }

  return {
    async listImages(): Promise<{ images: WireImage[] }> {
      // [] rather than the original's null when empty (its bug 12).
      return { images: (await records.values()).map(imageWire) }
    },

    async getImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      return { images: [imageWire(await record(p.id))] }
    },

    async requestImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      if (!p.id) throw new InvalidParamsError('need id')
      scope.imageDataset(p.id) // the id becomes a dataset name: check it first
      const have = await records.get(p.id)
      if (have?.status === 'complete') return { images: [imageWire(have)] }
      return { images: [imageWire(await fetchImage(p.id))] }
    },

    async deleteImage(p: ImageRequest): Promise<{ images: WireImage[] }> {
      const r = await record(p.id)
      const volume = r.volume ? scope.check(r.volume, { below: true }) : undefined
      // One recursive destroy takes the snapshot too, and zfs refuses it whole
      // while guest disks are cloned from the image: nothing half deleted.
      if (volume && (await zfs.findDataset(volume))) await zfs.destroy(volume, { recursive: true })
      await records.del(r.id)
      return { images: [imageWire(r)] }
    },

    async cloneImage(p: ImageRequest): Promise<{ volumes: WireVolume[] }> {
      if (!p.dest) throw new InvalidParamsError('need dest')
      const r = await record(p.id)
      // dest: a full name under <pool>/ as the original took it verbatim, or relative like every other id.
      const dest = p.dest.startsWith(`${scope.pool}/`) ? scope.check(p.dest, { below: true }) : scope.resolve(p.dest, { below: true })
      if (dest.includes('@')) throw new InvalidParamsError('dest must name a volume, not a snapshot')
      const snap = await getExisting(zfs, r.snapshot)
      await cloneStrict(zfs, snap.name, dest)
      return { volumes: [volumeWire(await getExisting(zfs, dest))] }
    },
  }
}
