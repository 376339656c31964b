/**
 * The one place that reads zfs's wording: an ordered rule table from stderr
 * text to a typed error. Tested against stderr recorded from the real zfs.
 */
import {
  DatasetBusyError, DatasetExistsError, DatasetNotFoundError, HasChildrenError, HasDependentClonesError,
  InvalidDatasetNameError, InvalidStreamError, MoreRecentSnapshotsError, OutOfSpaceError, ParentNotFoundError, ZfsCommandError,
  ZfsTimeoutError, type CommandInfo, type ZfsError,
} from './errors.js'

type ErrorClass = new (message: string, command?: CommandInfo) => ZfsError

/** First match wins; order matters where messages overlap. */
const RULES: ReadonlyArray<readonly [RegExp, ErrorClass]> = [
  [/has dependent clones|clones of previous snapshots exist/, HasDependentClonesError],
  [/more recent snapshots( or bookmarks)? exist/, MoreRecentSnapshotsError],
  [/has children/, HasChildrenError],
  [/out of space|no space left|insufficient space|quota exceeded|exceeds quota/i, OutOfSpaceError],
  [/invalid backup stream|checksum mismatch|stream is incomplete|incomplete stream|invalid stream|bad magic number|unsupported version|Input is not a valid stream|does not contain a valid/i, InvalidStreamError],
  [/parent does not exist/, ParentNotFoundError],
  [/dataset does not exist|could not find any snapshots|no such pool|does not exist|no such dataset|no datasets? (are )?available/, DatasetNotFoundError],
  [/already exists|destination '[^']*' exists/, DatasetExistsError],
  [/is busy/, DatasetBusyError],
  [/invalid (dataset|character|snapshot|name|pool)|name is too long|empty component|leading slash|trailing slash|multiple '@'|missing '@'|permits only one '@'/i, InvalidDatasetNameError],
]

/** The first meaningful line of stderr, for messages. */
export function firstLine(stderr: string): string {
  return stderr.split('\n').map((l) => l.trim()).find(Boolean) ?? ''
}

export function classify(info: CommandInfo): ZfsError {
  const summary = `${info.bin} ${info.args.join(' ')}`
  if (info.timedOut) return new ZfsTimeoutError(`${summary}: timed out`, info)
  const text = firstLine(info.stderr)
  const why = text || (info.signal ? `killed by ${info.signal}` : `exit code ${info.exitCode ?? '?'}`)
  for (const [pattern, Cls] of RULES) {
    if (pattern.test(info.stderr)) return new Cls(why, info)
  }
  return new ZfsCommandError(`${summary}: ${why}`, info)
}
