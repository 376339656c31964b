/**
 * Pure argv builders for zfs(8) and zpool(8). Every builder validates the
 * names it is given (names.ts) so nothing unchecked reaches argv, and every
 * listing uses scripting mode (-H -p) with a fixed column list, parsed
 * positionally by parse.ts.
 */
import {
  assertAnyName, assertDatasetName, assertPoolName, assertSnapshotName, assertSnapshotShortName,
} from './names.js'
import type { DatasetType, DestroyOptions, ReceiveOptions, SendOptions } from './types.js'
import { InvalidDatasetNameError } from './errors.js'

export type Argv = readonly string[]

/** Column order is the parse order; parse.ts fails if zfs prints another count. */
export const DATASET_COLUMNS = [
  'name', 'type', 'origin', 'used', 'available', 'referenced', 'volsize', 'written', 'quota',
  'creation', 'createtxg', 'guid', 'clones', 'receive_resume_token',
] as const

export const POOL_COLUMNS = ['name', 'size', 'allocated', 'free', 'health', 'readonly'] as const

const PROP_NAME = /^[a-z][a-z0-9_]*(:[a-z0-9_.:-]+)?$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/

/** A property name as zfs knows them (native or user): never an option, a list or a path. */
function assertPropName(p: string): void {
  if (!PROP_NAME.test(p)) throw new InvalidDatasetNameError(`invalid property name ${JSON.stringify(p)}`)
}

function propArgs(props: Readonly<Record<string, string>> | undefined): string[] {
  const out: string[] = []
  for (const [k, v] of Object.entries(props ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    assertPropName(k)
    if (v.includes('\n') || v.includes('\0')) throw new InvalidDatasetNameError(`invalid value for property ${k}`)
    out.push('-o', `${k}=${v}`)
  }
  return out
}

function flag(on: boolean | undefined, f: string): string[] {
  return on ? [f] : []
}

export interface ListArgs {
  readonly types: readonly DatasetType[]
  /** Datasets to list; none lists every pool. */
  readonly roots?: readonly string[]
  /** -r (default true when roots are given) */
  readonly recursive?: boolean
  /** -d N instead of -r */
  readonly depth?: number
}

export function list(o: ListArgs): Argv {
  for (const r of o.roots ?? []) assertAnyName(r)
  const depth = o.depth === undefined ? flag(o.recursive ?? true, '-r') : ['-d', String(Math.max(0, Math.trunc(o.depth)))]
  return ['list', '-H', '-p', '-t', o.types.join(','), '-o', DATASET_COLUMNS.join(','), ...depth, ...(o.roots ?? [])]
}

/** One dataset or snapshot, not recursive. */
export function getDataset(name: string): Argv {
  assertAnyName(name)
  return ['list', '-H', '-p', '-t', 'all', '-o', DATASET_COLUMNS.join(','), name]
}

export function getProps(names: readonly string[], props: readonly string[]): Argv {
  names.forEach(assertAnyName)
  props.forEach(assertPropName)
  return ['get', '-H', '-p', '-o', 'name,property,value,source', props.join(','), ...names]
}

/**
 * Every dataset under `roots` with its type, holds count and the `props` asked
 * for, in one pass (start-up's only look at the trees).
 */
export function scan(roots: readonly string[], props: readonly string[] = []): Argv {
  roots.forEach(assertAnyName)
  props.forEach(assertPropName)
  return ['get', '-H', '-p', '-r', '-t', 'all', '-o', 'name,property,value,source', ['type', 'userrefs', ...props].join(','), ...roots]
}

export function setProps(name: string, props: Readonly<Record<string, string>>): Argv {
  assertAnyName(name)
  const pairs = propArgs(props).filter((_, i) => i % 2 === 1)
  if (pairs.length === 0) throw new InvalidDatasetNameError('no properties to set')
  return ['set', ...pairs, name]
}

export function createFilesystem(name: string, o: { parents?: boolean; props?: Readonly<Record<string, string>> } = {}): Argv {
  assertDatasetName(name)
  return ['create', ...flag(o.parents, '-p'), ...propArgs(o.props), name]
}

export function createVolume(
  name: string,
  sizeBytes: number,
  o: { parents?: boolean; sparse?: boolean; blockSize?: number; props?: Readonly<Record<string, string>> } = {},
): Argv {
  assertDatasetName(name)
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new RangeError(`invalid volume size ${sizeBytes}`)
  const bs = o.blockSize === undefined ? [] : ['-b', String(o.blockSize)]
  return ['create', ...flag(o.parents, '-p'), ...flag(o.sparse, '-s'), '-V', String(sizeBytes), ...bs, ...propArgs(o.props), name]
}

export function snapshot(name: string, o: { recursive?: boolean; props?: Readonly<Record<string, string>> } = {}): Argv {
  assertSnapshotName(name)
  return ['snapshot', ...flag(o.recursive, '-r'), ...propArgs(o.props), name]
}

export function clone(snap: string, dest: string, o: { parents?: boolean; props?: Readonly<Record<string, string>> } = {}): Argv {
  assertSnapshotName(snap)
  assertDatasetName(dest)
  return ['clone', ...flag(o.parents, '-p'), ...propArgs(o.props), snap, dest]
}

export function destroy(name: string, o: DestroyOptions = {}): Argv {
  assertAnyName(name)
  return ['destroy', ...flag(o.recursive, '-r'), ...flag(o.dependents, '-R'), ...flag(o.defer, '-d'), ...flag(o.force, '-f'), name]
}

/** -r destroys more recent snapshots; -R also their clones. */
export function rollback(snap: string, o: { destroyMoreRecent?: boolean; destroyClones?: boolean; force?: boolean } = {}): Argv {
  assertSnapshotName(snap)
  return ['rollback', ...flag(o.destroyMoreRecent && !o.destroyClones, '-r'), ...flag(o.destroyClones, '-R'), ...flag(o.force, '-f'), snap]
}

export function rename(from: string, to: string, o: { parents?: boolean } = {}): Argv {
  assertAnyName(from)
  assertAnyName(to)
  if (from.includes('@') !== to.includes('@')) throw new InvalidDatasetNameError('rename cannot turn a snapshot into a dataset or back')
  return ['rename', ...flag(o.parents && !from.includes('@'), '-p'), from, to]
}

function sendFlags(o: SendOptions): string[] {
  const out = [...flag(o.replicate, '-R'), ...flag(o.compressed, '-c'), ...flag(o.raw, '-w'), ...flag(o.largeBlocks, '-L'), ...flag(o.embedded, '-e')]
  if (o.from !== undefined) {
    // zfs accepts a full name, '@snap' or '#bookmark' for the base.
    if (o.from.startsWith('@')) assertSnapshotShortName(o.from.slice(1), o.from)
    else if (o.from.startsWith('#')) assertSnapshotShortName(o.from.slice(1), o.from)
    else assertAnyName(o.from)
    out.push(o.intermediates ? '-I' : '-i', o.from)
  }
  return out
}

export function send(snap: string, o: SendOptions = {}): Argv {
  assertSnapshotName(snap)
  return ['send', ...sendFlags(o), snap]
}

/** Dry run with parsable size: `zfs send -n -P`, the estimate goes to stdout. */
export function sendEstimate(snap: string, o: SendOptions = {}): Argv {
  assertSnapshotName(snap)
  return ['send', '-n', '-P', ...sendFlags(o), snap]
}

const TOKEN = /^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$/i

/**
 * Resume an interrupted send from the receiver's receive_resume_token. With
 * `describe`, a dry run that also prints the token's contents (toname, ...).
 */
export function sendResume(token: string, o: { describe?: boolean } = {}): Argv {
  if (!TOKEN.test(token) || token.length > 4096) throw new InvalidDatasetNameError('malformed receive_resume_token')
  return ['send', ...(o.describe ? ['-n', '-v', '-P'] : []), '-t', token]
}

export function receive(name: string, o: ReceiveOptions = {}): Argv {
  assertAnyName(name)
  const exclude = (o.exclude ?? []).flatMap((p) => {
    assertPropName(p)
    return ['-x', p]
  })
  return ['receive', ...flag(o.resumable, '-s'), ...flag(o.force, '-F'), ...flag(o.noMount, '-u'), ...propArgs(o.props), ...exclude, name]
}

function assertTag(tag: string): void {
  if (!TAG.test(tag)) throw new InvalidDatasetNameError(`invalid hold tag ${JSON.stringify(tag)}`)
}

/** -r: also the same-named snapshots of descendants. */
export function hold(tag: string, snap: string, o: { recursive?: boolean } = {}): Argv {
  assertTag(tag)
  assertSnapshotName(snap)
  return ['hold', ...flag(o.recursive, '-r'), tag, snap]
}

export function release(tag: string, snap: string, o: { recursive?: boolean } = {}): Argv {
  assertTag(tag)
  assertSnapshotName(snap)
  return ['release', ...flag(o.recursive, '-r'), tag, snap]
}

export function holds(snaps: readonly string[], o: { recursive?: boolean } = {}): Argv {
  snaps.forEach(assertSnapshotName)
  return ['holds', '-H', ...flag(o.recursive, '-r'), ...snaps]
}

export function zpoolList(name?: string): Argv {
  if (name !== undefined) assertPoolName(name)
  return ['list', '-H', '-p', '-o', POOL_COLUMNS.join(','), ...(name === undefined ? [] : [name])]
}

