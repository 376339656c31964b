/**
 * Parsers for scripting-mode output (`-H`: tab-separated, no header; `-p`:
 * exact numbers). They see only strings, never a process, and fail loudly
 * (ZfsParseError) when the shape drifts from the columns we asked for.
 */
import { DATASET_COLUMNS, POOL_COLUMNS } from './commands.js'
import { ZfsParseError } from './errors.js'
import type { Dataset, DatasetProperty, DatasetType, Hold, Pool, ScannedDataset } from './types.js'

const TYPES: readonly DatasetType[] = ['filesystem', 'volume', 'snapshot', 'bookmark']

function rows(stdout: string, columns: number, what: string): string[][] {
  const lines = stdout.split('\n')
  if (lines.at(-1) === '') lines.pop()
  return lines.map((line, i) => {
    const cells = line.split('\t')
    if (cells.length !== columns) {
      throw new ZfsParseError(`${what}: line ${i + 1} has ${cells.length} columns, expected ${columns}: ${JSON.stringify(line)}`)
    }
    return cells
  })
}

function dash(v: string): string | undefined {
  return v === '-' || v === '' ? undefined : v
}

function num(v: string, field: string): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new ZfsParseError(`${field}: expected a whole number, got ${JSON.stringify(v)}`)
  return n
}

function optNum(v: string, field: string): number | undefined {
  const d = dash(v)
  return d === undefined ? undefined : num(d, field)
}

export function parseDatasets(stdout: string): Dataset[] {
  return rows(stdout, DATASET_COLUMNS.length, 'zfs list').map(([name, type, origin, used, avail, refer, volsize, written, quota, creation, createtxg, guid, clones, token]) => {
    if (!TYPES.includes(type as DatasetType)) throw new ZfsParseError(`zfs list: unknown type ${JSON.stringify(type)} for ${name}`)
    const q = optNum(quota!, 'quota')
    return {
      name: name!,
      type: type as DatasetType,
      origin: dash(origin!),
      used: optNum(used!, 'used') ?? 0,
      available: optNum(avail!, 'available'),
      referenced: optNum(refer!, 'referenced') ?? 0,
      volsize: optNum(volsize!, 'volsize'),
      written: optNum(written!, 'written') ?? 0,
      quota: q === 0 ? undefined : q,
      creation: num(creation!, 'creation'),
      createtxg: num(createtxg!, 'createtxg'),
      guid: guid!,
      clones: dash(clones!)?.split(',') ?? [],
      receiveResumeToken: dash(token!),
    }
  })
}

export function parseProps(stdout: string): DatasetProperty[] {
  return rows(stdout, 4, 'zfs get').map(([name, property, value, source]) => ({
    name: name!, property: property!, value: dash(value!), source: dash(source!),
  }))
}

/** `zfs get type,userrefs,…` lines (commands.scan) as one entry per dataset, in zfs's order. */
export function parseScan(stdout: string): ScannedDataset[] {
  const byName = new Map<string, { name: string; type?: DatasetType; userrefs: number; props: Map<string, string> }>()
  for (const p of parseProps(stdout)) {
    let d = byName.get(p.name)
    if (!d) byName.set(p.name, (d = { name: p.name, userrefs: 0, props: new Map() }))
    if (p.property === 'type') {
      if (!TYPES.includes(p.value as DatasetType)) throw new ZfsParseError(`zfs get: ${p.name} has type ${JSON.stringify(p.value)}`)
      d.type = p.value as DatasetType
    } else if (p.property === 'userrefs') {
      if (p.value !== undefined) d.userrefs = num(p.value, `${p.name} userrefs`)
    } else if (p.value !== undefined) d.props.set(p.property, p.value) // a user property that is not set prints '-'
  }
  return [...byName.values()].map((d) => {
    if (!d.type) throw new ZfsParseError(`zfs get: no type for ${d.name}`)
    return { name: d.name, type: d.type, userrefs: d.userrefs, props: d.props }
  })
}

export function parsePools(stdout: string): Pool[] {
  return rows(stdout, POOL_COLUMNS.length, 'zpool list').map(([name, size, alloc, free, health, ro]) => ({
    name: name!,
    size: num(size!, 'size'),
    allocated: num(alloc!, 'allocated'),
    free: num(free!, 'free'),
    health: health!,
    readonly: ro === 'on',
  }))
}

export function parseHolds(stdout: string): Hold[] {
  return rows(stdout, 3, 'zfs holds').map(([snapshot, tag, created]) => ({
    snapshot: snapshot!, tag: tag!, created: created!,
  }))
}

/**
 * `zfs send -n -P` prints lines like `full\t<snap>\t<bytes>` /
 * `incremental\t<from>\t<snap>\t<bytes>` and a final `size\t<bytes>`.
 */
export function parseSendEstimate(stdout: string): number {
  const line = stdout.split('\n').reverse().find((l) => l.startsWith('size\t'))
  if (line === undefined) throw new ZfsParseError(`zfs send -nP: no size line in ${JSON.stringify(stdout.slice(0, 200))}`)
  return num(line.split('\t')[1] ?? '', 'send size')
}

/**
 * `zfs send -n -v -P -t TOKEN`: "resume token contents:" then an nvlist dump
 * (`\ttoname = pool/fs@snap`, `\ttoguid = 0x…`, …), then the dry run's own
 * line naming what zfs resolved the guids to (`full\t<snap>\t<bytes>` or
 * `incremental\t<from>\t<snap>\t<bytes>`), and the size line.
 */
export function parseResumeToken(stdout: string): ResumeTokenInfo {
  const field = (k: string) => new RegExp(`^\\s*${k} = (.+)$`, 'm').exec(stdout)?.[1]?.trim()
  const guid = (k: string) => {
    const v = field(k)
    if (v === undefined) return undefined
    if (!/^0x[0-9a-f]+$/i.test(v)) throw new ZfsParseError(`zfs send -nvP -t: ${k} is not a hex number: ${JSON.stringify(v)}`)
    return BigInt(v)
  }
  const toname = field('toname')
  const toguid = guid('toguid')
  if (!toname || toguid === undefined) throw new ZfsParseError(`zfs send -nvP -t: no toname/toguid in ${JSON.stringify(stdout.slice(0, 300))}`)
  const line = stdout.split('\n').map((l) => l.split('\t')).find((f) => (f[0] === 'full' && f.length === 3) || (f[0] === 'incremental' && f.length === 4))
  if (!line) throw new ZfsParseError(`zfs send -nvP -t: no full/incremental line in ${JSON.stringify(stdout.slice(0, 300))}`)
  const resolved = line[0] === 'full' ? { to: line[1]! } : { from: line[1]!, to: line[2]! }
  return { toname, toguid, fromguid: guid('fromguid'), resolved, size: parseSendEstimate(stdout) }
}

export interface ResumeTokenInfo {
  /** The snapshot the token says it continues, by name: only a hint to zfs. */
  readonly toname: string
  /** What zfs actually sends: the snapshot with this guid, searched from toname's dataset up to the pool. */
  readonly toguid: bigint
  /** An incremental's base, found by guid the same way. */
  readonly fromguid: bigint | undefined
  /** The dry run's own line: the names zfs resolved the guids to. */
  readonly resolved: { readonly to: string; readonly from?: string }
  readonly size: number
}
