/**
 * Reliability: clients that go away during snapshot downloads. Downloads are
 * cut at random points (before the first byte, right after the headers, mid-
 * stream, after a stall, half way through a POST body) and some run to the
 * end as a control. Afterwards no `zfs send` may be left running, no hold of
 * ours may be left on any snapshot, and the per-snapshot download limit must
 * be whole again (4 concurrent downloads of one snapshot all start, and are
 * bit-identical to zfs send). Size: MISTIFY_DISCONNECTS (fast 16, long 80).
 */
import t from 'tap'
import { request } from 'node:http'
import { createHash } from 'node:crypto'
import { bash, haveZfs, sh, volumeWithSnapshot } from '../helpers/zpool.js'
import { startAgent } from '../helpers/agent.js'
import { HOLD_PREFIX } from '../../src/agent/services/downloads.js'
import { knob, pool as limited, prng, reportIfHung, summary, Tally, waitEmpty, zfsStreams } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const N = knob('MISTIFY_DISCONNECTS', 16, 80)
const SEED = knob('MISTIFY_DISCONNECT_SEED', Math.floor(Math.random() * 1e9), Math.floor(Math.random() * 1e9))
const MODES = ['before-first-byte', 'after-headers', 'mid-stream', 'stall-then-cut', 'post-body-cut', 'complete'] as const
type Mode = typeof MODES[number]

interface Result { mode: Mode; status: number; bytes: number; sawHeaders: boolean; sha?: string; ended: boolean; refusal?: string }

/** One download, cut according to `mode`; `cutAt` is a byte count (mid-stream) or a delay in ms. */
function download(base: string, id: string, mode: Mode, cutAt: number): Promise<Result> {
  return new Promise((resolve) => {
    const u = new URL(`${base}/snapshots/download`)
    const post = mode === 'post-body-cut'
    if (!post) u.searchParams.set('id', id)
    const r: Result = { mode, status: 0, bytes: 0, sawHeaders: false, ended: false }
    const h = createHash('sha256')
    const req = request(u, { method: post ? 'POST' : 'GET', headers: post ? { 'Content-Type': 'application/json', 'Content-Length': '200' } : {} })
    let done = false
    const finish = () => { if (!done) { done = true; resolve(r) } }
    const cut = () => { req.destroy(); setTimeout(finish, 50) }
    req.on('error', finish)
    req.on('close', () => setTimeout(finish, 50))
    req.on('response', (res) => {
      r.sawHeaders = true
      r.status = res.statusCode ?? 0
      // A refusal is read whole whatever the mode: its text says which limit it met.
      if (r.status === 503) {
        r.refusal = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { r.refusal += c })
        res.on('end', finish)
        return
      }
      if (mode === 'after-headers') { cut(); return }
      res.on('data', (c: Buffer) => {
        r.bytes += c.length
        h.update(c)
        if (mode === 'mid-stream' && r.bytes >= cutAt) cut()
        if (mode === 'stall-then-cut' && !res.isPaused()) { res.pause(); setTimeout(cut, cutAt) }
      })
      res.on('end', () => { r.ended = true; r.sha = h.digest('hex'); finish() })
      res.on('error', finish)
    })
    if (post) {
      // Part of the body, then gone: the agent is still reading the request.
      req.write(`{"id":${JSON.stringify(id)}`)
      setTimeout(cut, cutAt)
    } else {
      req.end()
      if (mode === 'before-first-byte') setTimeout(() => { if (!r.sawHeaders) cut() }, cutAt)
    }
  })
}

/**
 * A cut download keeps its place under the per-snapshot limit until its zfs send has
 * exited and its hold is released; under TCG with one vCPU that outlasted the next
 * request of the same worker once (503, "busy: 4 downloads of … running"). Only that
 * refusal is asked again, once the place is free: the answer that counts is the one
 * it then gets. Any other 503, or the same one 50 times over, stays the answer.
 */
async function downloadWhenFree(base: string, id: string, mode: Mode, cutAt: number, busy: { n: number }): Promise<Result> {
  for (let tries = 0; ; tries++) {
    const r = await download(base, id, mode, cutAt)
    if (r.status !== 503 || !/busy: \d+ downloads of \S+ running/.test(r.refusal ?? '') || tries === 50) return r
    busy.n++
    await new Promise((res) => setTimeout(res, 200))
  }
}

const ourHolds = (snaps: string[]) => sh('zfs', ['holds', '-H', ...snaps]).split('\n').filter((l) => l.includes(HOLD_PREFIX))

t.test('clients that disconnect mid-download leave no zfs send and no hold', async (t) => {
  reportIfHung(t, 180_000 + N * 500)
  const a = await startAgent(t)
  const P = a.pool
  const snaps = ['d0', 'd1', 'd2'].map((n) => volumeWithSnapshot(`${P}/guests/${n}`, { sizeMiB: 32, fillMiB: 16 }))
  const rel = (s: string) => s.slice(P.length + 1)
  const rand = prng(SEED)
  const plan = Array.from({ length: N }, (_, i) => {
    const mode = MODES[i % MODES.length]!
    const snap = snaps[Math.floor(rand() * snaps.length)]!
    const cutAt = mode === 'mid-stream' ? 1 + Math.floor(rand() * 12 * 1024 * 1024)
      : mode === 'before-first-byte' ? Math.floor(rand() * 60)
        : mode === 'stall-then-cut' ? 100 + Math.floor(rand() * 900)
          : mode === 'post-body-cut' ? Math.floor(rand() * 300) : 0
    return { mode, snap, cutAt }
  })

  const started = Date.now()
  // Four at a time: never over the per-snapshot limit, so each one really streams.
  const busy = { n: 0 }
  const results = await limited(plan, 4, (p) => downloadWhenFree(a.url, rel(p.snap), p.mode, p.cutAt, busy))
  const seconds = (Date.now() - started) / 1000
  const outcomes = new Tally()
  results.forEach((r) => outcomes.add(`${r.mode}/${r.ended ? 'ended' : r.sawHeaders ? (r.bytes ? 'cut mid-stream' : 'cut after headers') : 'cut before first byte'}`))

  t.ok(results.filter((r) => r.mode === 'complete').every((r) => r.status === 200 && r.ended), 'the control downloads ran to the end')
  t.ok(results.some((r) => !r.sawHeaders), 'some were cut before the first byte')
  t.ok(results.some((r) => r.sawHeaders && r.bytes > 0 && !r.ended), 'some were cut mid-stream')
  t.same(results.filter((r) => r.status !== 0 && r.status !== 200).map((r) => `${r.mode}: ${r.status}`), [], 'every answer that came was a 200')

  const leftSends = await waitEmpty(zfsStreams)
  t.same(leftSends, [], 'no zfs send left running')
  const allSnaps = sh('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', P]).trim().split('\n')
  const leftHolds = await waitEmpty(() => ourHolds(allSnaps))
  t.same(leftHolds, [], 'no download hold left on any snapshot')

  // The per-snapshot limit is whole again: 4 at once all start, and all are exact.
  const raw = (await bash(`zfs send ${snaps[0]} | sha256sum`)).stdout.split(' ')[0]
  const four = await Promise.all([1, 2, 3, 4].map(() => download(a.url, rel(snaps[0]!), 'complete', 0)))
  t.same(four.map((r) => r.status), [200, 200, 200, 200], 'four concurrent downloads of one snapshot are all accepted afterwards')
  t.same(four.map((r) => r.sha), [raw, raw, raw, raw], 'and each is bit-identical to zfs send')
  t.same(await waitEmpty(zfsStreams), [], 'none left running after them either')

  summary(t, 'disconnect', {
    downloads: N, seed: SEED, seconds: seconds.toFixed(1), leftSends: leftSends.length, leftHolds: leftHolds.length,
    bytes: results.reduce((s, r) => s + r.bytes, 0), busyRetries: busy.n, outcomes: outcomes.counts,
  })
})
