/** A ZfsRunner that answers only argv recorded from the real zfs (test/fixtures/zfs), and logs every argv it is asked. */
import { readdirSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PassThrough, Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { classify } from '../../src/zfs/classify.js'
import type { ZfsBin, ZfsRunner } from '../../src/zfs/runner.js'
import type { Child } from '../../src/common/exec.js'
import { createZfs } from '../../src/zfs/index.js'
import { createServices } from '../../src/agent/services/index.js'
import { createScope } from '../../src/agent/services/scope.js'
import { imageRecords } from '../../src/agent/catalog.js'
import { createFetchQueue } from '../../src/agent/jobs/queue.js'
import { DEFAULTS } from '../../src/agent/config.js'
import { openDb } from '../../src/common/db.js'
import { recorded, type Recorded } from './fixtures.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'zfs')

/** zfs subcommands that change the pool. */
const CHANGING = new Set(['create', 'destroy', 'snapshot', 'clone', 'rollback', 'rename', 'set', 'inherit', 'receive', 'recv', 'hold', 'release', 'promote', 'upgrade'])

export interface Call { readonly bin: ZfsBin; readonly args: readonly string[]; readonly recording: string }

export interface RecordedRunner extends ZfsRunner {
  /** Every argv asked, in order, with the recording that answered it (`''` when none did). */
  readonly calls: Call[]
  /** The asked argv that would have changed something, as `bin arg...` lines. */
  changes(): string[]
}

const key = (bin: string, args: readonly string[]) => JSON.stringify([bin, ...args])
const line = (bin: string, args: readonly string[]) => [bin, ...args].join(' ')

/** Every recording name of one zfs version. */
export function recordingNames(version: string): string[] {
  return readdirSync(join(root, version)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)).sort()
}

/**
 * A runner over `names` (default: all) of one version. When several
 * recordings answer one argv (the pool changed between them), they answer
 * in the order `names` gives, the last one from then on; without `names`
 * such an argv is refused, since no order is known.
 */
export function recordedRunner(version: string, names?: readonly string[]): RecordedRunner {
  const byArgv = new Map<string, Array<{ name: string; r: Recorded }>>()
  for (const name of names ?? recordingNames(version)) {
    const r = recorded(version, name)
    const k = key(r.bin, r.args)
    byArgv.set(k, [...byArgv.get(k) ?? [], { name, r }])
  }
  const calls: Call[] = []

  function answer(bin: ZfsBin, args: readonly string[]): Recorded {
    const all = byArgv.get(key(bin, args)) ?? []
    const hit = all.length > 1 ? (names ? all.shift() : undefined) : all[0]
    calls.push({ bin, args: [...args], recording: hit?.name ?? '' })
    if (all.length > 1 && !names) throw new Error(`recordings ${all.map((a) => a.name).join(', ')} answer the same argv (${line(bin, args)}): name them in order`)
    if (!hit) throw new Error(`no recording of zfs ${version} for: ${line(bin, args)}`)
    return hit.r
  }
  const failure = (r: Recorded) => classify({ bin: r.bin, args: r.args, exitCode: r.exitCode, stderr: r.stderr })

  return {
    calls,
    changes: () => calls.filter((c) => c.bin === 'zfs' && CHANGING.has(c.args[0] ?? '')).map((c) => line(c.bin, c.args)),

    // Answers are at hand at once, so there is nothing for a signal or a timeout to cut.
    async run(bin, args) {
      const r = answer(bin, args)
      if (r.exitCode !== 0) throw failure(r)
      return r.stdout
    },

    spawn(bin, args, o = {}): Child {
      const r = answer(bin, args)
      // stdin is drained and dropped: a recording's answer does not depend on what is fed.
      const stdin = o.stdin === 'pipe' ? new Writable({ write: (_c, _e, cb) => cb() }) : null
      const stdout = o.stdout === 'ignore' ? null : Readable.from([Buffer.from(r.stdout)]).pipe(new PassThrough())
      const done = (async () => {
        if (stdin) await finished(stdin)
        if (r.exitCode !== 0) throw failure(r)
      })()
      done.catch(() => {})
      return {
        pid: undefined, stdin, stdout, done,
        kill: () => { stdin?.destroy(); stdout?.destroy() },
      }
    },
  }
}

/** The real services over the real adapter over `runner`, with a real catalog in a test directory. */
export async function recordedServices(dir: string, runner: RecordedRunner, pool = 'tank') {
  const db = await openDb(dir)
  const records = imageRecords(db)
  const services = createServices({
    zfs: createZfs(runner),
    scope: createScope(pool),
    records,
    fetches: createFetchQueue({ concurrency: 1, maxPending: 4 }),
    // Port 9 (discard): nothing in these tests may fetch.
    config: { ...DEFAULTS, imageServer: 'http://127.0.0.1:9' },
  })
  return { services, records, close: () => db.close() }
}
