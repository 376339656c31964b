/**
 * Typed errors of the ZFS adapter. `classify.ts` turns a failed command's
 * stderr into one of these, so no caller ever matches on zfs's wording.
 */

/** What every failed zfs/zpool invocation carries, for logs and the wire. */
export interface CommandInfo {
  readonly bin: string
  readonly args: readonly string[]
  readonly exitCode?: number | undefined
  readonly signal?: string | undefined
  readonly timedOut?: boolean | undefined
  readonly stderr: string
}

export type ZfsErrorKind =
  | 'not_found'
  | 'already_exists'
  | 'busy'
  | 'invalid_name'
  | 'has_clones'
  | 'has_children'
  | 'more_recent_snapshots'
  | 'out_of_space'
  | 'invalid_stream'
  | 'timeout'
  | 'parse'
  | 'other'

export class ZfsError extends Error {
  override name = 'ZfsError'
  readonly kind: ZfsErrorKind = 'other'
  readonly command: CommandInfo | undefined
  constructor(message: string, command?: CommandInfo, options?: { cause?: unknown }) {
    super(message, options)
    this.command = command
  }
}

export class DatasetNotFoundError extends ZfsError {
  override name = 'DatasetNotFoundError'
  override readonly kind = 'not_found'
}
/** A dataset to create has no parent (create/clone without -p): the caller may make it and retry. */
export class ParentNotFoundError extends DatasetNotFoundError {
  override name = 'ParentNotFoundError'
}
export class DatasetExistsError extends ZfsError {
  override name = 'DatasetExistsError'
  override readonly kind = 'already_exists'
}
export class DatasetBusyError extends ZfsError {
  override name = 'DatasetBusyError'
  override readonly kind = 'busy'
}
/** Raised by names.ts before anything runs, and by classify.ts when zfs itself rejects a name. */
export class InvalidDatasetNameError extends ZfsError {
  override name = 'InvalidDatasetNameError'
  override readonly kind = 'invalid_name'
}
export class HasDependentClonesError extends ZfsError {
  override name = 'HasDependentClonesError'
  override readonly kind = 'has_clones'
  /** The clones zfs named as in the way (its `use '-R'` list, snapshots left out). */
  get dependents(): string[] {
    const lines = (this.command?.stderr ?? '').split('\n').map((l) => l.trim())
    const from = lines.findIndex((l) => l.startsWith("use '-R'"))
    return from < 0 ? [] : lines.slice(from + 1).filter((l) => l !== '' && !l.includes('@'))
  }
}
export class HasChildrenError extends ZfsError {
  override name = 'HasChildrenError'
  override readonly kind = 'has_children'
}
export class MoreRecentSnapshotsError extends ZfsError {
  override name = 'MoreRecentSnapshotsError'
  override readonly kind = 'more_recent_snapshots'
}
export class OutOfSpaceError extends ZfsError {
  override name = 'OutOfSpaceError'
  override readonly kind = 'out_of_space'
}
/** `zfs receive` was fed something that is not a (complete, intact) send stream. */
export class InvalidStreamError extends ZfsError {
  override name = 'InvalidStreamError'
  override readonly kind = 'invalid_stream'
}
export class ZfsTimeoutError extends ZfsError {
  override name = 'ZfsTimeoutError'
  override readonly kind = 'timeout'
}
/** Scripting-mode output did not have the shape we asked for: the CLI drifted. */
export class ZfsParseError extends ZfsError {
  override name = 'ZfsParseError'
  override readonly kind = 'parse'
}
/** Any other failure; `command.stderr` says what zfs said. */
export class ZfsCommandError extends ZfsError {
  override name = 'ZfsCommandError'
}
