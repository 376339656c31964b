/** CreateVolume, GetVolume, ListVolumes, DeleteDataset. */
import { InvalidParamsError } from '../errors.js'
import { lookup, NEED_AN_ID } from './lookup.js'
import { MiB, volumeWire, type WireVolume } from './shapes.js'
import { createVolumeStrict, type Deps } from './deps.js'
import type { VolumeRequest } from '../rpc/requests.js'

export type { VolumeRequest }

export function createVolumeService(d: Deps) {
  const { zfs, scope } = d
  return {
    async listVolumes(signal?: AbortSignal): Promise<{ volumes: WireVolume[] }> {
      const vols = await zfs.listDatasets({ types: ['volume'], roots: [scope.images, scope.guests] }, { signal })
      return { volumes: vols.map(volumeWire) }
    },

    async createVolume(p: VolumeRequest, signal?: AbortSignal): Promise<{ volumes: WireVolume[] }> {
      if (!p.size || !Number.isSafeInteger(p.size * MiB)) throw new InvalidParamsError('need a valid size')
      if (!p.id) throw new InvalidParamsError(NEED_AN_ID)
      const name = scope.resolve(p.id, { below: true, guestsOnly: true })
      if (name.includes('@')) throw new InvalidParamsError('a volume id cannot name a snapshot')
      await createVolumeStrict(zfs, name, p.size * MiB, { signal })
      return { volumes: [volumeWire(await zfs.getDataset(name, { signal }))] }
    },

    async getVolume(p: VolumeRequest, signal?: AbortSignal): Promise<{ volumes: WireVolume[] }> {
      // 'not found' here too (the original returned zfs's raw error: its bug 6).
      const ds = await lookup(zfs, scope, p.id, { signal })
      if (ds.type !== 'volume') throw new InvalidParamsError('not a volume')
      return { volumes: [volumeWire(ds)] }
    },

    async deleteDataset(p: VolumeRequest, signal?: AbortSignal): Promise<{ volumes: WireVolume[] }> {
      // Refused before any lookup when under images/, record or not: an
      // image's dataset goes with its record, through DeleteImage.
      const ds = await lookup(zfs, scope, p.id, { below: true, guestsOnly: true, signal })
      await zfs.destroy(ds.name, { recursive: true }, { signal })
      return { volumes: [volumeWire(ds)] }
    },
  }
}

