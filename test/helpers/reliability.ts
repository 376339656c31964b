/**
 * Shared pieces of the reliability suites (test/integration/reliability-*.test.ts
 * and crash.test.ts): size knobs (fast for npm test, long for
 * `npm run reliability`), the one summary line per suite that
 * scripts/reliability.sh collects, raw HTTP posts, and ZFS state captures to
 * prove that nothing outside the agent's trees moved.
 */
import { execFile, spawn } from 'node:child_process'
import type { Test } from 'tap'
import { sh } from './zpool.js'

/** MISTIFY_RELIABILITY=long selects the long settings (scripts/reliability.sh). */
export const LONG = process.env.MISTIFY_RELIABILITY === 'long'

/** A size knob: its own environment variable, else the fast or long default. */
export function knob(name: string, fast: number, long: number): number {
  const v = process.env[name]
  if (v !== undefined && v !== '') {
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}: expected a whole number, got ${JSON.stringify(v)}`)
    return n
  }
  return LONG ? long : fast
}

interface Commenter { comment(...args: unknown[]): void }

/** One line per suite: `RELIABILITY <suite>: k=v ...` (scripts/reliability.sh greps for it). */
export function summary(t: Commenter, suite: string, fields: Record<string, unknown>): void {
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
  t.comment(`RELIABILITY ${suite}: ${parts.join(' ')}`)
}

/** Count occurrences by key. */
export class Tally {
  readonly counts: Record<string, number> = {}
  add(key: string, n = 1): void { this.counts[key] = (this.counts[key] ?? 0) + n }
  get(key: string): number { return this.counts[key] ?? 0 }
}

export interface RawAnswer {
  status: number
  text: string
  contentType: string
  /** Set when the transport failed (connection reset, timeout) instead of an HTTP answer. */
  transport?: string
}

/** One raw HTTP request; transport failures are returned, not thrown. */
export async function rawRequest(url: string, o: { method?: string; body?: string | Buffer; contentType?: string | null; timeoutMs?: number } = {}): Promise<RawAnswer> {
  const headers: Record<string, string> = {}
  if (o.contentType !== null) headers['Content-Type'] = o.contentType ?? 'application/json'
  try {
    const res = await fetch(url, {
      method: o.method ?? 'POST', headers, ...(o.body !== undefined ? { body: o.body as unknown as string } : {}),
      signal: AbortSignal.timeout(o.timeoutMs ?? 120_000),
    })
    const text = await res.text()
    return { status: res.status, text, contentType: res.headers.get('content-type') ?? '' }
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } }
    return { status: 0, text: '', contentType: '', transport: err.cause?.code ?? err.cause?.message ?? err.name }
  }
}

const CHILD_FIGURES = ['guid', 'createtxg', 'used', 'written'] as const
const ROOT_FIGURES = ['guid', 'createtxg', 'usedbydataset'] as const
const FIGURES = new Set<string>([...CHILD_FIGURES, ...ROOT_FIGURES])

/**
 * Every dataset, snapshot and volume of `pools` with the figures that change
 * when anything is written, created, destroyed or renamed, plus every locally
 * set or received property (user properties included), and the holds on the
 * snapshots. Sorted lines: compare two captures with t.same.
 */
export function zfsState(pools: readonly string[]): string[] {
  const out: string[] = []
  for (const pool of pools) {
    // Let the pool finish its own background work first (pending syncs, frees of destroyed datasets).
    sh('zpool', ['sync', pool])
    sh('zpool', ['wait', '-t', 'free', pool])
    // One `zfs get` for both the figures and the properties: under TCG each zfs process
    // costs most of a second, and this capture runs twice per refusal checked.
    const figures = new Map<string, Map<string, string>>()
    for (const l of sh('zfs', ['get', '-H', '-p', '-o', 'name,property,value,source', 'all', '-t', 'all', '-r', pool]).split('\n')) {
      if (!l) continue
      const [name, property, value, source] = l.split('\t') as [string, string, string, string]
      if (FIGURES.has(property)) {
        const f = figures.get(name) ?? new Map<string, string>()
        figures.set(name, f.set(property, value))
      }
      if (source === 'local' || source === 'received') out.push(`prop\t${l}`)
    }
    // The root's `used` sums the pool's metadata too, which moves on its own:
    // the root is compared by what it holds itself, every child by `used` and `written`.
    for (const [name, f] of figures) out.push(['list', name, ...(name === pool ? ROOT_FIGURES : CHILD_FIGURES).map((k) => f.get(k) ?? '-')].join('\t'))
    const snaps = [...figures.keys()].filter((n) => n.includes('@'))
    if (snaps.length) out.push(...sh('zfs', ['holds', '-H', ...snaps]).trim().split('\n').filter(Boolean).map((l) => `hold\t${l}`))
  }
  return out.sort()
}

/** Only the lines of a capture about datasets at or below `root`. */
export function under(state: readonly string[], root: string): string[] {
  return state.filter((l) => {
    const name = l.split('\t')[1]!
    return name === root || name.startsWith(`${root}/`) || name.startsWith(`${root}@`)
  })
}

/** Running zfs send/receive processes (their command lines), without blocking the event loop. */
export async function zfsStreams(): Promise<string[]> {
  const out = await new Promise<string>((resolve) => execFile('ps', ['-eo', 'pid=,args='], (_e, stdout) => resolve(stdout ?? '')))
  return out.split('\n').filter((l) => /^\s*\d+\s+(\S*\/)?zfs (send|receive|recv)\b/.test(l)).map((l) => l.trim())
}

/** Any zfs or zpool process at all (orphans of a killed agent finish on their own). */
export async function zfsProcesses(): Promise<string[]> {
  const out = await new Promise<string>((resolve) => execFile('ps', ['-eo', 'pid=,args='], (_e, stdout) => resolve(stdout ?? '')))
  return out.split('\n').filter((l) => /^\s*\d+\s+(\S*\/)?(zfs|zpool) /.test(l)).map((l) => l.trim())
}

/** Poll `probe` until it returns an empty list or `ms` pass; the last result. */
export async function waitEmpty(probe: () => Promise<string[]> | string[], ms = 15_000): Promise<string[]> {
  const end = Date.now() + ms
  let left = await probe()
  while (left.length && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200))
    left = await probe()
  }
  return left
}

/** Run `fn` over `items` with at most `limit` at once, in order of start. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i]!, i) } }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

/** A small seeded PRNG (mulberry32): reproducible random choices, the seed printed by the suite. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Run `fn`, which must be refused; then the pool must be exactly as before it, and no zfs stream left running. */
export async function unchanged(t: Test, a: { pool: string }, what: string, fn: () => Promise<void>): Promise<void> {
  const before = zfsState([a.pool])
  await fn()
  t.same(await waitEmpty(zfsStreams), [], `${what}: no zfs send/receive left running`)
  t.same(zfsState([a.pool]), before, `${what}: nothing in the pool changed, inside the trees or out`)
}

/** `zfs send ARGS` as a Buffer (small test streams only). */
export async function streamOf(args: string): Promise<Buffer> {
  const r = await new Promise<{ status: number; stdout: Buffer; stderr: string }>((resolve) => {
    execFile('bash', ['-c', `zfs send ${args}`], { encoding: 'buffer', maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      resolve({ status: err ? 1 : 0, stdout, stderr: stderr.toString() })
    })
  })
  if (r.status !== 0) throw new Error(`zfs send ${args}: ${r.stderr}`)
  return r.stdout
}

/**
 * If this test process is still running after `ms`, a separate shell prints
 * the machine's state as TAP comments: it writes to our stdout itself, so it
 * reports even when this process's event loop is stuck. Stopped in teardown.
 */
export function reportIfHung(t: { teardown(fn: () => void): void }, ms: number): void {
  const script = `sleep ${Math.ceil(ms / 1000)}; { echo "HUNG after ${Math.ceil(ms / 1000)} s (pid ${process.pid}): state follows"; df -m /tmp; free -m; zpool list; zpool status -x;
    ps -eo pid,ppid,stat,etime,wchan:28,args --sort=start_time | grep -v '\\[' | tail -40; cat /proc/${process.pid}/stack 2>/dev/null; grep -E 'State|Threads' /proc/${process.pid}/status; ls -l /proc/${process.pid}/task | wc -l; for t in /proc/${process.pid}/task/*; do echo "$t $(cat $t/wchan) $(cat $t/stat | cut -d' ' -f3)"; done; } 2>&1 | sed 's/^/# /'`
  const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'inherit', 'ignore'], detached: true })
  child.unref()
  t.teardown(() => { try { process.kill(-child.pid!, 'SIGKILL') } catch { /* gone */ } })
}
