/**
 * The ZFS adapter: each method builds argv (commands.ts, which validates
 * names), runs it through the injected runner, and parses the result
 * (parse.ts). The only import path other folders use for ZFS.
 */
import { pipeline } from 'node:stream/promises'
import type { Readable } from 'node:stream'
import * as cmd from './commands.js'
import * as parse from './parse.js'
import { DatasetNotFoundError } from './errors.js'
import { createZfsRunner, type ZfsRunner } from './runner.js'
import type { Child, ExecOptions } from '../common/exec.js'
import type { Dataset, DatasetType, DestroyOptions, Hold, Pool, ReceiveOptions, ScannedDataset, SendOptions } from './types.js'

export * from './errors.js'
export * from './types.js'
export * as names from './names.js'
export * from './stream-header.js'
export { zvolPath } from './names.js'
export { createZfsRunner, type ZfsRunner } from './runner.js'
export type { ExecOptions } from '../common/exec.js'

type Props = Readonly<Record<string, string>>

/** A send's stdout: a pipe for the caller (default), or a descriptor zfs writes into itself. */
export type StreamOptions = ExecOptions & { readonly stdout?: 'pipe' | number }

/** Errors our side of a pipe sees when the process at the other end went away. */
function isPipeError(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED'
}

export interface Zfs {
  listDatasets(o: cmd.ListArgs, x?: ExecOptions): Promise<Dataset[]>
  /** Throws DatasetNotFoundError when it does not exist. */
  getDataset(name: string, x?: ExecOptions): Promise<Dataset>
  /** undefined when it does not exist. */
  findDataset(name: string, x?: ExecOptions): Promise<Dataset | undefined>
  getProps(names: readonly string[], props: readonly string[], x?: ExecOptions): Promise<Map<string, Map<string, string | undefined>>>
  setProps(name: string, props: Props, x?: ExecOptions): Promise<void>
  createFilesystem(name: string, o?: { parents?: boolean; props?: Props }, x?: ExecOptions): Promise<void>
  createVolume(name: string, sizeBytes: number, o?: { parents?: boolean; sparse?: boolean; blockSize?: number; props?: Props }, x?: ExecOptions): Promise<void>
  snapshot(name: string, o?: { recursive?: boolean; props?: Props }, x?: ExecOptions): Promise<void>
  clone(snap: string, dest: string, o?: { parents?: boolean; props?: Props }, x?: ExecOptions): Promise<void>
  destroy(name: string, o?: DestroyOptions, x?: ExecOptions): Promise<void>
  rollback(snap: string, o?: { destroyMoreRecent?: boolean; destroyClones?: boolean }, x?: ExecOptions): Promise<void>
  rename(from: string, to: string, o?: { parents?: boolean }, x?: ExecOptions): Promise<void>
  /** A running `zfs send`; the caller consumes `stdout` and awaits `done`. */
  send(snap: string, o?: SendOptions, x?: StreamOptions): Child
  sendResume(token: string, x?: StreamOptions): Child
  /** Estimated stream size in bytes (`zfs send -nP`). */
  sendEstimate(snap: string, o?: SendOptions, x?: ExecOptions): Promise<number>
  /** What a resume token names, decoded by zfs itself (so a corrupt one is refused). */
  describeResumeToken(token: string, x?: ExecOptions): Promise<parse.ResumeTokenInfo>
  /** Pipe `input` into `zfs receive`; rejects with zfs's error, or the input's. */
  receive(name: string, input: Readable | AsyncIterable<Buffer>, o?: ReceiveOptions, x?: ExecOptions): Promise<void>
  hold(tag: string, snap: string, o?: { recursive?: boolean }, x?: ExecOptions): Promise<void>
  release(tag: string, snap: string, o?: { recursive?: boolean }, x?: ExecOptions): Promise<void>
  holds(snaps: readonly string[], o?: { recursive?: boolean }, x?: ExecOptions): Promise<Hold[]>
  /** Every dataset under `roots` (themselves included) with its type, holds count and `props`: one zfs command. */
  scan(roots: readonly string[], props?: readonly string[], x?: ExecOptions): Promise<ScannedDataset[]>
  pools(name?: string, x?: ExecOptions): Promise<Pool[]>
}

export function createZfs(runner: ZfsRunner = createZfsRunner()): Zfs {
  const zfs = (args: cmd.Argv, x?: ExecOptions) => runner.run('zfs', args, x)

  const zfsApi: Zfs = {
    async listDatasets(o, x) {
      return parse.parseDatasets(await zfs(cmd.list(o), x))
    },
    async getDataset(name, x) {
      const [d] = parse.parseDatasets(await zfs(cmd.getDataset(name), x))
      if (!d) throw new DatasetNotFoundError(`${name}: dataset does not exist`)
      return d
    },
    async findDataset(name, x) {
      try {
        return await zfsApi.getDataset(name, x)
      } catch (e) {
        if (e instanceof DatasetNotFoundError) return undefined
        throw e
      }
    },
    async getProps(names, props, x) {
      const out = new Map<string, Map<string, string | undefined>>()
      for (const p of parse.parseProps(await zfs(cmd.getProps(names, props), x))) {
        let m = out.get(p.name)
        if (!m) out.set(p.name, (m = new Map()))
        m.set(p.property, p.value)
      }
      return out
    },
    async setProps(name, props, x) { await zfs(cmd.setProps(name, props), x) },
    async createFilesystem(name, o, x) { await zfs(cmd.createFilesystem(name, o), x) },
    async createVolume(name, size, o, x) { await zfs(cmd.createVolume(name, size, o), x) },
    async snapshot(name, o, x) { await zfs(cmd.snapshot(name, o), x) },
    async clone(snap, dest, o, x) { await zfs(cmd.clone(snap, dest, o), x) },
    async destroy(name, o, x) { await zfs(cmd.destroy(name, o), x) },
    async rollback(snap, o, x) { await zfs(cmd.rollback(snap, o), x) },
    async rename(from, to, o, x) { await zfs(cmd.rename(from, to, o), x) },
    send(snap, o, x) { return runner.spawn('zfs', cmd.send(snap, o), { stdout: 'pipe', ...x }) },
    sendResume(token, x) { return runner.spawn('zfs', cmd.sendResume(token), { stdout: 'pipe', ...x }) },
    async sendEstimate(snap, o, x) { return parse.parseSendEstimate(await zfs(cmd.sendEstimate(snap, o), x)) },
    async describeResumeToken(token, x) { return parse.parseResumeToken(await zfs(cmd.sendResume(token, { describe: true }), x)) },
    async receive(name, input, o, x) {
      const child = runner.spawn('zfs', cmd.receive(name, o), { ...x, stdin: 'pipe', stdout: 'ignore' })
      const fed = pipeline(input, child.stdin!).catch((e: unknown) => {
        // The source failed (not just EPIPE from a zfs that gave up): stop zfs now.
        if (!isPipeError(e)) child.kill()
        throw e
      })
      const [f, exited] = await Promise.allSettled([fed, child.done])
      // A failed source is the root cause; zfs's verdict explains more than the EPIPE it caused.
      if (f.status === 'rejected' && !isPipeError(f.reason)) throw f.reason
      if (exited.status === 'rejected') throw exited.reason
      if (f.status === 'rejected') throw f.reason
    },
    async hold(tag, snap, o, x) { await zfs(cmd.hold(tag, snap, o), x) },
    async release(tag, snap, o, x) { await zfs(cmd.release(tag, snap, o), x) },
    async holds(snaps, o, x) { return parse.parseHolds(await zfs(cmd.holds(snaps, o), x)) },
    async scan(roots, props, x) { return parse.parseScan(await zfs(cmd.scan(roots, props), x)) },
    async pools(name, x) { return parse.parsePools(await runner.run('zpool', cmd.zpoolList(name), x)) },
  }
  return zfsApi
}

export type { DatasetType }
