/**
 * Dataset and snapshot name rules, checked before a name reaches argv.
 * Stricter than zfs itself on purpose: no component may start with '-' (it
 * would read as an option), and no '.'/'..' or empty components (they are how
 * the original's filepath.Join let a request escape its tree).
 */
import { InvalidDatasetNameError } from './errors.js'

/** ZFS_MAX_DATASET_NAME_LEN is 256 including the NUL. */
export const MAX_NAME_LENGTH = 255
const COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/
const POOL = /^[A-Za-z][A-Za-z0-9_.:-]*$/
const RESERVED_POOL = /^(mirror|raidz|draid|spare|log|cache|special|dedup|c[0-9].*)$/

function invalid(name: string, why: string): never {
  throw new InvalidDatasetNameError(`invalid dataset name ${JSON.stringify(name)}: ${why}`)
}

function checkComponent(full: string, c: string): void {
  if (c === '') invalid(full, 'empty component')
  if (c === '.' || c === '..') invalid(full, `'${c}' is not allowed`)
  if (!COMPONENT.test(c)) {
    invalid(full, c.startsWith('-') ? 'a component may not start with "-"' : `bad characters in "${c}" (allowed: letters, digits, _ . : -)`)
  }
}

export function assertPoolName(name: string): void {
  if (typeof name !== 'string' || name === '') invalid(String(name), 'empty pool name')
  if (name.length > MAX_NAME_LENGTH) invalid(name, 'too long')
  if (!POOL.test(name)) invalid(name, 'a pool name starts with a letter and has only letters, digits, _ . : -')
  if (RESERVED_POOL.test(name)) invalid(name, 'reserved pool name')
}

/** A filesystem or volume name: pool[/component...]. */
export function assertDatasetName(name: string): void {
  if (typeof name !== 'string' || name === '') invalid(String(name), 'empty name')
  if (name.length > MAX_NAME_LENGTH) invalid(name, `longer than ${MAX_NAME_LENGTH} characters`)
  if (name.includes('@')) invalid(name, 'a snapshot name where a dataset was expected')
  const [pool, ...rest] = name.split('/')
  assertPoolName(pool ?? '')
  for (const c of rest) checkComponent(name, c)
}

/** A snapshot's short name (the part after '@'). */
export function assertSnapshotShortName(snap: string, full = snap): void {
  if (typeof snap !== 'string' || snap === '') invalid(full, 'empty snapshot name')
  checkComponent(full, snap)
}

/** dataset@snapshot */
export function assertSnapshotName(name: string): void {
  const { dataset, snapshot } = splitSnapshotName(name)
  assertDatasetName(dataset)
  assertSnapshotShortName(snapshot, name)
  if (name.length > MAX_NAME_LENGTH) invalid(name, `longer than ${MAX_NAME_LENGTH} characters`)
}

/** A dataset or a snapshot name. */
export function assertAnyName(name: string): void {
  if (typeof name === 'string' && name.includes('@')) assertSnapshotName(name)
  else assertDatasetName(name)
}

export function splitSnapshotName(name: string): { dataset: string; snapshot: string } {
  if (typeof name !== 'string') invalid(String(name), 'not a string')
  const at = name.indexOf('@')
  if (at < 0) invalid(name, "missing '@'")
  if (name.indexOf('@', at + 1) >= 0) invalid(name, "more than one '@'")
  return { dataset: name.slice(0, at), snapshot: name.slice(at + 1) }
}

/** True when `name` is `root` itself or lies below it (snapshots of either included). */
export function isWithin(name: string, root: string): boolean {
  return name === root || name.startsWith(`${root}/`) || name.startsWith(`${root}@`)
}

/** The block device udev makes for a volume. */
export function zvolPath(volume: string): string {
  return `/dev/zvol/${volume}`
}
