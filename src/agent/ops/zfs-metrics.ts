/**
 * instrumentRunner: a ZfsRunner that times every zfs/zpool command and counts
 * failures by subcommand and error kind, and counts the bytes fed into
 * `zfs receive` (image imports) as bytes imported. Behaviour is otherwise
 * the wrapped runner's, errors included.
 */
import { pipeline } from 'node:stream'
import { countingStream } from '../../common/counting.js'
import type { ZfsRunner } from '../../zfs/runner.js'
import type { Child } from '../../common/exec.js'
import { ZfsError } from '../../zfs/errors.js'
import type { Metrics } from './metrics.js'

type Observer = Pick<Metrics, 'zfsDuration' | 'zfsFailures' | 'onImportBytes'>

/** The subcommand (`list`, `receive`, …); anything odd is `other` so labels stay bounded. */
export function commandOf(args: readonly string[]): string {
  const a = args[0] ?? ''
  return /^[a-z][a-z-]{0,30}$/.test(a) ? a : 'other'
}

function kindOf(e: unknown): string {
  return e instanceof ZfsError ? e.kind : 'other'
}

export function instrumentRunner(runner: ZfsRunner, metrics: Observer): ZfsRunner {
  const observe = (bin: string, command: string, start: bigint, err?: unknown) => {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    metrics.zfsDuration.observe({ bin, command, outcome: err === undefined ? 'ok' : 'error' }, seconds)
    if (err !== undefined) metrics.zfsFailures.inc({ bin, command, kind: kindOf(err) })
  }
  return {
    async run(bin, args, o) {
      const command = commandOf(args)
      const start = process.hrtime.bigint()
      try {
        const out = await runner.run(bin, args, o)
        observe(bin, command, start)
        return out
      } catch (e) {
        observe(bin, command, start, e)
        throw e
      }
    },
    spawn(bin, args, o) {
      const command = commandOf(args)
      const start = process.hrtime.bigint()
      const child = runner.spawn(bin, args, o)
      let stdin = child.stdin
      if (bin === 'zfs' && command === 'receive' && stdin) {
        // Writers feed the counter; an error of the real stdin (EPIPE) reaches them through it.
        const counted = countingStream((n) => metrics.onImportBytes(n))
        pipeline(counted, stdin, () => {})
        stdin = counted
      }
      const done = child.done.then(() => observe(bin, command, start), (e: unknown) => { observe(bin, command, start, e); throw e })
      done.catch(() => {}) // as exec.ts: callers look at done only after their stream ends
      const wrapped: Child = {
        pid: child.pid, stdin, stdout: child.stdout, stderr: child.stderr ?? null, done, kill: () => child.kill(),
      }
      return wrapped
    },
  }
}
