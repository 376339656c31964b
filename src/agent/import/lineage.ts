/**
 * The cheapest way to an image: the image service's records form chains
 * (each version an increment from its origin, by snapshot guid); an agent
 * that holds a version of the chain fetches only the increments after it,
 * one that holds none fetches the chain's start whole when that plus the
 * increments is fewer bytes than the image whole.
 */
import { UpstreamError } from '../errors.js'

/** What the agent reads of an image service record. */
export interface ServiceRecord {
  readonly id: string
  /** Bytes of the full stream. */
  readonly size: number
  /** Guid of the snapshot in its zfs stream; '' when unknown. */
  readonly snapshot_guid: string
  /** The image its increment starts from; '' for none. */
  readonly origin: string
  readonly increment: { readonly from_guid: string; readonly size: number; readonly sha256: string } | null
}

export type Step =
  | { readonly kind: 'full'; readonly record: ServiceRecord }
  /** `record`'s increment, received as a clone of `record.origin`'s snapshot. */
  | { readonly kind: 'increment'; readonly record: ServiceRecord }

export interface PlanInputs {
  /** The image service's record of `id`, or undefined when it cannot be had. */
  lookup(id: string): Promise<ServiceRecord | undefined>
  /** Whether this agent holds `r` whole: a complete image whose snapshot carries `r.snapshot_guid`. */
  holds(r: ServiceRecord): Promise<boolean>
  /** Most increments to fetch; 0: the full stream always. */
  depth: number
}

const linked = (r: ServiceRecord): boolean => r.origin !== '' && r.increment !== null && r.snapshot_guid !== ''

/**
 * The imports that reach `target`, origin first. Walks origins back from the
 * target until it finds one this agent holds, runs out of links, or has
 * `depth` increments; then takes whichever is fewer bytes on the wire.
 */
export async function planFetch(target: ServiceRecord, p: PlanInputs): Promise<Step[]> {
  const whole: Step[] = [{ kind: 'full', record: target }]
  /** The increments to fetch, oldest first; each starts from the one before (or from `start`). */
  const chain: ServiceRecord[] = []
  let start = target
  const seen = new Set([target.id])
  while (linked(start) && chain.length < p.depth) {
    const origin = await p.lookup(start.origin)
    // A link that does not hold (a missing origin, a guid that does not match, a cycle) ends the walk.
    if (!origin || seen.has(origin.id) || origin.snapshot_guid !== start.increment!.from_guid) break
    seen.add(origin.id)
    chain.unshift(start)
    start = origin
    if (await p.holds(origin)) {
      return sum(chain) < target.size ? chain.map((record) => ({ kind: 'increment', record })) : whole
    }
  }
  // Nothing held: `start` whole and the increments after it, if that is cheaper.
  if (chain.length > 0 && start.size + sum(chain) < target.size) {
    return [{ kind: 'full', record: start }, ...chain.map((record) => ({ kind: 'increment' as const, record }))]
  }
  return whole
}

const sum = (rs: readonly ServiceRecord[]) => rs.reduce((n, r) => n + r.increment!.size, 0)

/** A record as the image service's native API answers it; older services have no lineage fields. */
export function parseServiceRecord(id: string, body: string): ServiceRecord {
  let v: unknown
  try { v = JSON.parse(body) } catch { throw new UpstreamError(`image ${id}: the image service's record is not JSON`) }
  const r = v as Partial<Record<keyof ServiceRecord, unknown>> | null
  const bad = (what: string) => new UpstreamError(`image ${id}: the image service's record has a bad ${what}`)
  if (typeof r !== 'object' || r === null || r.id !== id) throw bad('id')
  if (typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0) throw bad('size')
  const guid = r.snapshot_guid ?? ''
  const origin = r.origin ?? ''
  if (typeof guid !== 'string' || !/^\d*$/.test(guid)) throw bad('snapshot_guid')
  if (typeof origin !== 'string') throw bad('origin')
  const inc = r.increment ?? null
  if (inc !== null) {
    const i = inc as Record<string, unknown>
    if (typeof i.from_guid !== 'string' || !/^\d+$/.test(i.from_guid)) throw bad('increment.from_guid')
    if (typeof i.size !== 'number' || !Number.isSafeInteger(i.size) || i.size < 0) throw bad('increment.size')
    if (typeof i.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(i.sha256)) throw bad('increment.sha256')
    return { id, size: r.size, snapshot_guid: guid, origin, increment: { from_guid: i.from_guid, size: i.size, sha256: i.sha256 } }
  }
  return { id, size: r.size, snapshot_guid: guid, origin, increment: null }
}
