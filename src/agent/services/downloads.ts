/**
 * Snapshot streams for /snapshots/download: full, incremental (`from`),
 * replication (`recursive`), compressed/raw, and resumed (`token`).
 * Everything that can be refused is refused here, before the first byte.
 * The snapshot is held (`zfs hold`) for as long as its stream runs, so it
 * cannot be destroyed under a transfer; holds left by a crash are released
 * at start-up. Streams are limited per snapshot and in all (`maxDownloads`):
 * each one is a zfs process and a hold.
 */
import { randomBytes } from 'node:crypto'
import { BusyError, InvalidParamsError, NotFoundError } from '../errors.js'
import { names, ZfsError, type Dataset, type ScannedDataset } from '../../zfs/index.js'
import type { Child } from '../../common/exec.js'
import type { SendOptions } from '../../zfs/types.js'
import type { ResumeTokenInfo } from '../../zfs/parse.js'
import { getExisting } from './lookup.js'
import type { Deps } from './deps.js'
import type { Config } from '../config.js'
import type { createSnapshotService } from './snapshots.js'
import type { DownloadRequest } from '../rpc/requests.js'

export type { DownloadRequest }

export interface Lease {
  readonly snapshot: string
  readonly kind: 'full' | 'incremental' | 'resume'
  /** `zfs send -nP`'s estimate in bytes: a hint, not a promise. */
  readonly estimate: number | undefined
  /**
   * Start `zfs send` (once): its stdout a pipe for the caller, or a
   * descriptor it writes into itself (the client's socket: zero-copy).
   */
  start(stdout: 'pipe' | number): Child
  /** Kill the stream if it runs, and drop the hold. Idempotent. */
  release(): Promise<void>
}

/** What a stream would be, from the dry run alone (HEAD). */
export type Probe = Pick<Lease, 'snapshot' | 'kind' | 'estimate'>

// A zfs send writing into a client's socket outlives us unless killed: nothing of ours sits between them.
const running = new Set<Child>()
let exitHook = false
function track(child: Child): void {
  running.add(child)
  void child.done.catch(() => {}).finally(() => running.delete(child))
  if (exitHook) return
  exitHook = true
  process.once('exit', () => { for (const c of running) c.kill() })
}

/** Tag prefix of this agent's holds; start-up releases any it finds. */
export const HOLD_PREFIX = 'mistify-download.'

export function createDownloadService(d: Deps & {
  snapshots: Pick<ReturnType<typeof createSnapshotService>, 'getSnapshot'>
  maxPerSnapshot?: number
  onError?: (obj: object, msg: string) => void
  // Optional here: the agent passes its whole Config; tests may leave them out.
  config: Deps['config'] & Partial<Pick<Config, 'maxDownloads' | 'downloadIdleTimeoutMs'>>
}) {
  const { zfs, scope } = d
  const maxPerSnapshot = d.maxPerSnapshot ?? 4
  const active = new Map<string, number>()
  // All snapshots together: a zfs send and a hold each, and nothing else bounded them.
  const maxDownloads = d.config.maxDownloads ?? 16
  let streams = 0

  /**
   * zfs sends the snapshot whose guid the token carries, searching upward
   * from toname's dataset to the pool root; the name alone proves nothing.
   * So: toname must be ours and carry exactly that guid, the dry run must
   * have resolved it to that same name, and an incremental's base likewise.
   */
  async function checkResumeToken(info: ResumeTokenInfo): Promise<Dataset> {
    const refuse = (why: string) => new InvalidParamsError(`invalid resume token: ${why}`)
    const mine = (name: string) => { try { scope.check(name); return true } catch { return false } }
    if (!mine(info.toname)) throw refuse(`it names ${info.toname}, outside this agent's datasets`)
    const snap = await getExisting(zfs, info.toname)
    if (BigInt(snap.guid) !== info.toguid) throw refuse(`${info.toname} is not the snapshot it was made for (guid ${info.toguid})`)
    if (info.resolved.to !== snap.name) throw refuse(`zfs would send ${info.resolved.to}, not ${info.toname}`)
    if (info.fromguid !== undefined || info.resolved.from !== undefined) {
      const from = info.resolved.from
      if (from === undefined || info.fromguid === undefined || !mine(from)) throw refuse(`its incremental base ${from ?? '(unnamed)'} is not one of this agent's snapshots`)
      const base = await getExisting(zfs, from)
      if (BigInt(base.guid) !== info.fromguid) throw refuse(`its incremental base ${from} does not carry guid ${info.fromguid}`)
    }
    return snap
  }

  /** The base of an incremental send, checked against the snapshot it leads to. */
  async function resolveBase(snap: Dataset, from: string): Promise<Dataset> {
    const { dataset } = names.splitSnapshotName(snap.name)
    const full = from.startsWith('@') ? `${dataset}${from}` : from.startsWith(`${scope.pool}/`) ? from : `${scope.pool}/${from}`
    let base: Dataset
    try {
      base = await getExisting(zfs, scope.check(full))
    } catch (e) {
      throw new InvalidParamsError(`bad from ${JSON.stringify(from)}: ${(e as Error).message}`)
    }
    if (base.type !== 'snapshot') throw new InvalidParamsError(`bad from ${JSON.stringify(from)}: not a snapshot`)
    const baseDataset = names.splitSnapshotName(base.name).dataset
    const origin = (await zfs.getDataset(dataset)).origin
    if (baseDataset === dataset) {
      if (base.createtxg >= snap.createtxg) throw new InvalidParamsError(`bad from ${JSON.stringify(from)}: it is not older than ${snap.name}`)
    } else if (base.name !== origin) {
      throw new InvalidParamsError(`bad from ${JSON.stringify(from)}: neither a snapshot of ${dataset} nor its origin`)
    }
    return base
  }

  /** The base named by its guid: a snapshot of the same dataset, or the dataset's origin. */
  async function baseByGuid(snap: Dataset, guid: string): Promise<string> {
    if (!/^\d{1,20}$/.test(guid)) throw new InvalidParamsError(`bad from_guid ${JSON.stringify(guid)}: a decimal guid`)
    const { dataset } = names.splitSnapshotName(snap.name)
    const own = await zfs.listDatasets({ types: ['snapshot'], roots: [dataset], depth: 1 })
    const found = own.find((s) => s.guid === guid)
    if (found) return found.name
    const origin = (await zfs.getDataset(dataset)).origin
    if (origin && (await zfs.findDataset(origin))?.guid === guid) return origin
    throw new NotFoundError(`no snapshot of ${dataset.slice(scope.pool.length + 1)} or its origin has guid ${guid}`)
  }

  return {
    /** For the route: a client that takes no bytes for this long is cut. */
    idleTimeoutMs: d.config.downloadIdleTimeoutMs ?? 60_000,

    /** HEAD: what open() would send, checked the same way, without a hold, a zfs send or a slot. */
    describe(req: DownloadRequest): Promise<Probe> {
      return this.open(req, { probe: true })
    },

    async open<P extends boolean = false>(req: DownloadRequest, o: { probe?: P } = {}): Promise<P extends true ? Probe : Lease> {
      let snap: Dataset
      let estimate: number | undefined
      let opts: SendOptions = {}
      let kind: Lease['kind'] = 'full'
      if (req.token) {
        if (req.from || req.from_guid || req.recursive) throw new InvalidParamsError('a resume token carries its own snapshot and flags: give it alone')
        let info
        try {
          info = await zfs.describeResumeToken(req.token)
        } catch (e) {
          throw new InvalidParamsError(`invalid resume token: ${e instanceof ZfsError ? e.message : 'cannot be read'}`)
        }
        snap = await checkResumeToken(info)
        estimate = info.size
        kind = 'resume'
      } else {
        snap = await d.snapshots.getSnapshot(req.id)
        if (req.from && req.from_guid) throw new InvalidParamsError('from and from_guid: give one of them')
        const from = req.from_guid ? await baseByGuid(snap, req.from_guid) : req.from
        const base = from ? await resolveBase(snap, from) : undefined
        if (req.raw) {
          const enc = (await zfs.getProps([snap.name], ['encryption'])).get(snap.name)?.get('encryption')
          if (!enc || enc === 'off') throw new InvalidParamsError('raw streams are only for encrypted datasets')
        }
        opts = {
          replicate: req.recursive, compressed: req.compressed, raw: req.raw,
          ...(base ? { from: base.name, intermediates: req.intermediates } : {}),
        }
        kind = base ? 'incremental' : 'full'
        try {
          estimate = await zfs.sendEstimate(snap.name, opts)
        } catch (e) {
          // The dry run checks what the real send would: its refusal is the request's fault.
          throw new InvalidParamsError(`cannot send ${snap.name}: ${(e as Error).message}`)
        }
      }
      if (o.probe) return { snapshot: snap.name, kind, estimate } satisfies Probe as never
      const n = active.get(snap.name) ?? 0
      if (n >= maxPerSnapshot) throw new BusyError(`busy: ${n} downloads of ${snap.name} running, try again later`)
      if (streams >= maxDownloads) throw new BusyError(`busy: ${streams} downloads running, try again later`)
      active.set(snap.name, n + 1)
      streams++
      const tag = `${HOLD_PREFIX}${randomBytes(6).toString('hex')}`
      const holdOpts = { recursive: req.recursive && kind !== 'resume' }
      try {
        await zfs.hold(tag, snap.name, holdOpts)
      } catch (e) {
        active.set(snap.name, n)
        streams--
        throw e
      }
      let child: Child | undefined
      let released: Promise<void> | undefined
      const lease: Lease = {
        snapshot: snap.name, kind, estimate,
        start(stdout) {
          if (child || released) throw new Error(`the stream of ${snap.name} was already started or released`)
          child = kind === 'resume' ? zfs.sendResume(req.token, { stdout }) : zfs.send(snap.name, opts, { stdout })
          track(child)
          return child
        },
        release() {
          released ??= (async () => {
            if (child) {
              child.kill()
              await child.done.catch(() => {})
            }
            await zfs.release(tag, snap.name, holdOpts).catch((e: Error) => d.onError?.({ snapshot: snap.name, tag, err: e.message }, 'could not release hold'))
            active.set(snap.name, (active.get(snap.name) ?? 1) - 1)
            streams--
          })()
          return released
        },
      }
      return lease as never
    },

    /** Release holds a previous run of the agent left (it crashed mid-stream). */
    async releaseStale(tree: readonly ScannedDataset[]): Promise<number> {
      // Only snapshots that hold anything are asked for their holds: usually none.
      const held = tree.filter((d) => d.type === 'snapshot' && d.userrefs > 0 && [scope.images, scope.guests].some((root) => names.isWithin(d.name, root))).map((d) => d.name)
      let released = 0
      // In slices: one argv cannot carry tens of thousands of names.
      for (let i = 0; i < held.length; i += 500) {
        const holds = await zfs.holds(held.slice(i, i + 500))
        for (const h of holds.filter((x) => x.tag.startsWith(HOLD_PREFIX))) {
          await zfs.release(h.tag, h.snapshot)
          released++
        }
      }
      return released
    },
  }
}
