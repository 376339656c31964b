/** Plain data the adapter returns. Sizes are bytes, times are Unix seconds. */

export type DatasetType = 'filesystem' | 'volume' | 'snapshot' | 'bookmark'

export interface Dataset {
  readonly name: string
  readonly type: DatasetType
  /** The snapshot a clone was made from. */
  readonly origin: string | undefined
  readonly used: number
  /** Unset for snapshots. */
  readonly available: number | undefined
  readonly referenced: number
  /** Set for volumes and snapshots of volumes. */
  readonly volsize: number | undefined
  /** Bytes written since the previous snapshot (for a snapshot: since the one before it). */
  readonly written: number
  /** Unset when no quota is set (zfs reports 0 or '-'). */
  readonly quota: number | undefined
  readonly creation: number
  /** Transaction group of creation: orders snapshots exactly (creation has 1 s resolution). */
  readonly createtxg: number
  readonly guid: string
  /** For a snapshot: the clones made from it. */
  readonly clones: readonly string[]
  /** Set while a `zfs receive -s` into this dataset is incomplete. */
  readonly receiveResumeToken: string | undefined
}

export type PoolHealth = 'ONLINE' | 'DEGRADED' | 'FAULTED' | 'OFFLINE' | 'REMOVED' | 'UNAVAIL' | 'SUSPENDED'

export interface Pool {
  readonly name: string
  readonly size: number
  readonly allocated: number
  readonly free: number
  readonly health: PoolHealth | string
  readonly readonly: boolean
}

export interface DatasetProperty {
  readonly name: string
  readonly property: string
  /** undefined when zfs prints '-' */
  readonly value: string | undefined
  readonly source: string | undefined
}

/** One dataset of a tree scan: its type, for a snapshot how many holds it has, and the properties asked for. */
export interface ScannedDataset {
  readonly name: string
  readonly type: DatasetType
  /** Holds on a snapshot (`userrefs`); 0 for other types. */
  readonly userrefs: number
  /** The scan's extra properties that have a value here (a user property not set is absent). */
  readonly props: ReadonlyMap<string, string>
}

export interface Hold {
  readonly snapshot: string
  readonly tag: string
  /** As zfs prints it (2.1 has no -p for holds): e.g. 'Tue Nov 24 03:46 2026'. */
  readonly created: string
}

export interface DestroyOptions {
  /** -r: descendants (for a snapshot: same-named snapshots of descendants) */
  readonly recursive?: boolean
  /** -R: also dependents (clones) outside the hierarchy */
  readonly dependents?: boolean
  /** -d: defer destruction of a held/cloned snapshot */
  readonly defer?: boolean
  /** -f: force unmount */
  readonly force?: boolean
}

export interface SendOptions {
  /** -i base: increment from this snapshot (full name or '@short' / '#bookmark'). */
  readonly from?: string
  /** -I instead of -i: include intermediate snapshots. */
  readonly intermediates?: boolean
  /** -R: replication stream of the dataset and its descendants. */
  readonly replicate?: boolean
  /** -c: keep on-disk compression. */
  readonly compressed?: boolean
  /** -w: raw (encrypted) stream. */
  readonly raw?: boolean
  /** -L: large blocks. */
  readonly largeBlocks?: boolean
  /** -e: embedded data. */
  readonly embedded?: boolean
}

export interface ReceiveOptions {
  /** -s: keep partial state so an interrupted receive can resume. */
  readonly resumable?: boolean
  /** -F: roll back / overwrite the destination. */
  readonly force?: boolean
  /** -u: do not mount. */
  readonly noMount?: boolean
  /** -o prop=value for the received dataset. */
  readonly props?: Readonly<Record<string, string>>
  /** -x prop: whatever the stream says, the received dataset inherits these. */
  readonly exclude?: readonly string[]
}
