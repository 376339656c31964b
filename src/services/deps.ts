/** What every service gets. Composition happens in services/index.ts. */
import type { Zfs } from '../zfs/index.js'
import type { Scope } from './scope.js'
import type { ImageRecords } from './image-records.js'
import type { FetchQueue } from '../fetch/queue.js'
import type { Config } from '../config.js'

export interface Deps {
  readonly zfs: Zfs
  readonly scope: Scope
  readonly records: ImageRecords
  readonly fetches: FetchQueue
  readonly config: Pick<Config, 'imageServer' | 'fetchIdleTimeoutMs'>
}

/** Properties every volume this agent creates gets (as the original). */
export const VOLUME_PROPS = { compression: 'lz4' } as const

/**
 * Create a volume, making missing parent filesystems first. Not `create -p`
 * for the volume itself: that succeeds silently when it already exists.
 */
export async function createVolumeStrict(zfs: Deps['zfs'], name: string, bytes: number): Promise<void> {
  await zfs.createFilesystem(parentOf(name), { parents: true })
  await zfs.createVolume(name, bytes, { props: VOLUME_PROPS })
}

/** Clone a snapshot to a new volume, parents first (same reason as above). */
export async function cloneStrict(zfs: Deps['zfs'], snapshot: string, dest: string): Promise<void> {
  await zfs.createFilesystem(parentOf(dest), { parents: true })
  await zfs.clone(snapshot, dest, { props: VOLUME_PROPS })
}

function parentOf(name: string): string {
  return name.slice(0, name.lastIndexOf('/'))
}
