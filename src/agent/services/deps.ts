/** What every service gets. Composition happens in services/index.ts. */
import { ParentNotFoundError, type ExecOptions, type Zfs } from '../../zfs/index.js'
import type { Scope } from './scope.js'
import type { ImageRecords } from '../catalog.js'
import type { FetchQueue } from '../jobs/queue.js'
import type { Config } from '../config.js'

export interface Deps {
  readonly zfs: Zfs
  readonly scope: Scope
  readonly records: ImageRecords
  readonly fetches: FetchQueue
  readonly config: Pick<Config, 'imageServer' | 'fetchIdleTimeoutMs' | 'fileSources' | 'maxImageBytes' | 'acceptUndigestedImages' | 'allowSourceHosts' | 'urlSources'>
    // Absent (deps built by hand in tests): full streams only.
    & Partial<Pick<Config, 'incrementDepth'>>
}

/** Properties every volume this agent creates gets (as the original). */
export const VOLUME_PROPS = { compression: 'lz4' } as const

/**
 * Create a volume, making missing parent filesystems when zfs says they are
 * missing. Not `create -p` for the volume itself: that succeeds silently when
 * it already exists.
 */
export async function createVolumeStrict(zfs: Deps['zfs'], name: string, bytes: number, x: ExecOptions = {}): Promise<void> {
  await withParents(zfs, name, x, () => zfs.createVolume(name, bytes, { props: VOLUME_PROPS }, x))
}

/** Clone a snapshot to a new volume, parents made when missing (same reason as above). */
export async function cloneStrict(zfs: Deps['zfs'], snapshot: string, dest: string, x: ExecOptions = {}): Promise<void> {
  await withParents(zfs, dest, x, () => zfs.clone(snapshot, dest, { props: VOLUME_PROPS }, x))
}

/**
 * Run `make`; only if zfs answers that the parent does not exist, create the
 * parents and run it once more. Usually the parent exists, and asking first
 * would cost a zfs command (a tenth of a second or more) on every call.
 */
async function withParents(zfs: Deps['zfs'], name: string, x: ExecOptions, make: () => Promise<void>): Promise<void> {
  try {
    await make()
  } catch (e) {
    if (!(e instanceof ParentNotFoundError)) throw e
    await zfs.createFilesystem(parentOf(name), { parents: true }, x)
    await make()
  }
}

function parentOf(name: string): string {
  return name.slice(0, name.lastIndexOf('/'))
}
