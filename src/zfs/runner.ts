/** Binds the process module to zfs/zpool: binary paths, default timeout, and classified errors. */
import { runCommand, spawnCommand, type Child, type ExecOptions, type SpawnOptions } from '../common/exec.js'
import { classify } from './classify.js'
import type { Argv } from './commands.js'

export type ZfsBin = 'zfs' | 'zpool'

export interface ZfsRunner {
  run(bin: ZfsBin, args: Argv, o?: ExecOptions): Promise<string>
  spawn(bin: ZfsBin, args: Argv, o?: SpawnOptions): Child
}

export interface RunnerConfig {
  readonly zfsBin?: string
  readonly zpoolBin?: string
  /** Default limit for buffered commands; streams have none unless given. */
  readonly timeoutMs?: number
}

export function createZfsRunner(c: RunnerConfig = {}): ZfsRunner {
  const path = (bin: ZfsBin) => (bin === 'zfs' ? c.zfsBin ?? 'zfs' : c.zpoolBin ?? 'zpool')
  const timeoutMs = c.timeoutMs ?? 10 * 60_000
  return {
    run: (bin, args, o = {}) => runCommand(path(bin), args, classify, { timeoutMs, ...o }),
    spawn: (bin, args, o = {}) => spawnCommand(path(bin), args, classify, o),
  }
}
