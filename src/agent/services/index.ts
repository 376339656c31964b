/** Composition only: every service over the same dependencies. */
import type { Deps } from './deps.js'
import { createImageService } from './images.js'
import { createSnapshotService } from './snapshots.js'
import { createVolumeService } from './volumes.js'
import { createDiskService } from './disks.js'
import { createDownloadService } from './downloads.js'

export function createServices(d: Deps & { onError?: (obj: object, msg: string) => void }) {
  const snapshots = createSnapshotService(d)
  return {
    images: createImageService(d),
    snapshots,
    volumes: createVolumeService(d),
    disks: createDiskService(d),
    downloads: createDownloadService({ ...d, snapshots }),
  }
}

export type Services = ReturnType<typeof createServices>
export type { Deps } from './deps.js'
