/** Composition only: every service over the same dependencies. */
import type { Deps } from './deps.js'
import { createImageService } from './images.js'
import { createSnapshotService } from './snapshots.js'
import { createVolumeService } from './volumes.js'
import { createDiskService } from './disks.js'

export function createServices(d: Deps) {
  return {
    images: createImageService(d),
    snapshots: createSnapshotService(d),
    volumes: createVolumeService(d),
    disks: createDiskService(d),
  }
}

export type Services = ReturnType<typeof createServices>
export type { Deps } from './deps.js'
