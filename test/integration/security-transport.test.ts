/**
 * Issue 12, "Confinement and integrity", items 9, 12 and 13 against a real
 * agent on real ZFS (inside the VM): the Host check (DNS rebinding), the
 * JSON-RPC 2.0 batch cap and a batch cut short by its client, and the
 * download limits (idle timeout, global limit, HEAD from the dry run).
 * Every refusal is checked to have changed nothing: zfsState of the pool
 * (datasets, properties, holds) before and after.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { bash, haveZfs, sh, volumeWithSnapshot } from '../helpers/zpool.js'
import { startAgent } from '../helpers/agent.js'
import { HOLD_PREFIX } from '../../src/agent/services/downloads.js'
import { MAX_BATCH } from '../../src/agent/rpc/gorilla/protocol.js'
import { waitEmpty, zfsProcesses, zfsState, zfsStreams } from '../helpers/reliability.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const ourHolds = (snaps: string[]) => sh('zfs', ['holds', '-H', ...snaps]).split('\n').filter((l) => l.includes(HOLD_PREFIX))
/** Real streams only: `zfs send -n -P` is the dry run (the estimate), which HEAD may run. */
const realSends = async () => (await zfsStreams()).filter((l) => /\bzfs send\b/.test(l) && !/\bsend -n\b/.test(l))
/** Volumes under a name prefix, with their volsize (async: the agent runs in this process). */
async function volumes(prefix: string): Promise<Map<string, number>> {
  const r = await bash(`zfs list -H -p -o name,volsize -t volume -r ${prefix.slice(0, prefix.lastIndexOf('/'))}`)
  const out = new Map<string, number>()
  for (const l of r.stdout.trim().split('\n').filter(Boolean)) {
    const [name, size] = l.split('\t')
    if (name!.startsWith(prefix)) out.set(name!, Number(size))
  }
  return out
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One request with exactly this Host header (fetch cannot set it). */
function request(url: string, o: { method?: string; host?: string; body?: string } = {}): Promise<Answer> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const r = http.request({
      hostname: u.hostname, port: u.port, path: u.pathname + u.search, method: o.method ?? 'GET', agent: false,
      ...(o.host !== undefined ? { setHost: false } : {}),
      headers: { ...(o.host !== undefined ? { Host: o.host } : {}), ...(o.body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    r.on('error', reject)
    r.end(o.body)
  })
}

/** A download whose reader pauses after the headers: it holds a slot until `cut()`. */
function pausedDownload(url: string): Promise<{ status: number; cut: () => void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.pause()
      resolve({ status: res.statusCode ?? 0, cut: () => req.destroy() })
    })
    req.on('error', (e) => { if (!req.destroyed) reject(e) })
  })
}

/** A whole download's sha256 and status. */
function fullDownload(url: string): Promise<{ status: number; sha: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const h = createHash('sha256')
      let text = ''
      res.on('data', (c: Buffer) => { h.update(c); if (text.length < 1000) text += c.toString('latin1') })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sha: h.digest('hex'), body: text }))
      res.on('error', reject)
    }).on('error', reject)
  })
}

const v2 = (calls: unknown[]) => JSON.stringify(calls.map((params, i) => ({ jsonrpc: '2.0', method: 'CreateVolume', params, id: i + 1 })))

t.test('item 9: Host header check against the real agent: a rebound name runs nothing', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  const snap = volumeWithSnapshot(`${P}/guests/h1`, { sizeMiB: 16, fillMiB: 8 })
  const port = new URL(a.url).port
  const before = zfsState([P])
  const create = JSON.stringify({ jsonrpc: '2.0', method: 'CreateVolume', params: { id: 'guests/evil', size: 4 }, id: 1 })
  const rpc = await request(`${a.url}/_mistify_RPC_`, { method: 'POST', host: `evil.example:${port}`, body: create })
  t.equal(rpc.status, 421, 'a JSON-RPC call with Host evil.example')
  t.match(rpc.body, /^misdirected request: this agent does not answer to Host "evil\.example:\d+"/)
  // Watch for a zfs send while the download is refused.
  let sawSend = false
  const watch = setInterval(() => { void realSends().then((s) => { if (s.length) sawSend = true }) }, 20)
  const dl = await request(`${a.url}/snapshots/download?id=guests/h1@s`, { host: 'evil.example' })
  clearInterval(watch)
  t.equal(dl.status, 421, 'a download with Host evil.example')
  t.equal(sawSend, false, 'no zfs send started')
  t.same(zfsState([P]), before, 'nothing changed: no volume, no hold')
  t.same(ourHolds([snap]), [])

  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
    const ok = await request(`${a.url}/_mistify_RPC_`, { method: 'POST', host, body: JSON.stringify({ jsonrpc: '2.0', method: 'ListVolumes', params: {}, id: 1 }) })
    t.equal(ok.status, 200, `Host ${host}`)
    t.ok(JSON.parse(ok.body).result.volumes.some((v: { id: string }) => v.id === `${P}/guests/h1`), 'and the call ran')
  }
  const made = await request(`${a.url}/_mistify_RPC_`, { method: 'POST', host: `localhost:${port}`, body: create })
  t.equal(JSON.parse(made.body).result.volumes[0].id, `${P}/guests/evil`, 'the same call with Host localhost runs')
  const dlOk = await fullDownload(`${a.url}/snapshots/download?id=guests/h1@s`)
  t.equal(dlOk.status, 200, 'a download by address (as mistify-agent) is served')
})

t.test('item 12: a batch over the cap runs no call and changes nothing', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  sh('zfs', ['create', `${P}/guests/b`])
  const before = zfsState([P])
  const body = v2(Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ id: `guests/b/v${i}`, size: 1 })))
  let sawZfs = false
  const watch = setInterval(() => { void zfsProcesses().then((p) => { if (p.length) sawZfs = true }) }, 20)
  const started = Date.now()
  const r = await request(`${a.url}/_mistify_RPC_`, { method: 'POST', body })
  const ms = Date.now() - started
  clearInterval(watch)
  t.equal(r.status, 200)
  t.same(JSON.parse(r.body), {
    jsonrpc: '2.0', id: null,
    error: { code: -32600, message: `Invalid Request: a batch of ${MAX_BATCH + 1} calls, more than the limit of ${MAX_BATCH}` },
  }, 'one error object, not 101 answers')
  t.equal(sawZfs, false, `no zfs command ran (answered in ${ms} ms)`)
  t.same(zfsState([P]), before, 'nothing changed')
  t.same([...(await volumes(`${P}/guests/b/`)).keys()], [], 'no volume was made')
})

t.test('item 12: a batch whose client disconnects after the first call starts no further calls', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  sh('zfs', ['create', `${P}/guests/x`])
  const N = 50
  const body = v2(Array.from({ length: N }, (_, i) => ({ id: `guests/x/x${i + 1}`, size: 1 })))
  const u = new URL(`${a.url}/_mistify_RPC_`)
  const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false, headers: { 'Content-Type': 'application/json' } })
  req.on('error', () => {}) // we hang up
  req.end(body)
  // Wait for the first volume, then go away.
  const deadline = Date.now() + 60_000
  while ((await volumes(`${P}/guests/x/`)).size === 0 && Date.now() < deadline) await sleep(50)
  req.destroy()
  const atCut = (await volumes(`${P}/guests/x/`)).size
  t.ok(atCut >= 1, `the batch had started (${atCut} made when the client left)`)
  // Let the agent finish the call it was in, then give it time to start more if it would (each takes ~0.3 s here).
  t.same(await waitEmpty(zfsProcesses, 30_000), [], 'the agent went idle')
  await sleep(3000)
  t.same(await zfsProcesses(), [], 'and stayed idle')
  const made = await volumes(`${P}/guests/x/`)
  t.ok(made.size <= atCut + 1, `${made.size} of ${N} volumes made: at most the one running when the client left`)
  t.ok(made.size < N / 5, 'far fewer than the batch asked for')
  for (const [name, size] of made) t.equal(size, 1 << 20, `${name} is whole (1 MiB)`)
  const names = [...made.keys()].map((n) => Number(n.slice(n.lastIndexOf('x') + 1))).sort((x, y) => x - y)
  t.same(names, names.map((_, i) => i + 1), 'a prefix of the batch, in order')
})

t.test('item 13: a stalled reader is cut after the idle timeout: no zfs send, no hold, the snapshot can be destroyed', async (t) => {
  const a = await startAgent(t, { config: { downloadIdleTimeoutMs: 2000 } })
  const P = a.pool
  // 64 MiB of random data: more than the socket buffers on both sides hold, so the agent's writes block.
  const snap = volumeWithSnapshot(`${P}/guests/big`, { sizeMiB: 96, fillMiB: 64 })
  const u = new URL(a.url)
  const s = net.connect(Number(u.port), u.hostname)
  await once(s, 'connect')
  s.on('error', () => {})
  s.pause() // the GET goes out; nothing is ever read
  s.write(`GET /snapshots/download?id=guests/big@s HTTP/1.1\r\nHost: 127.0.0.1:${u.port}\r\n\r\n`)
  t.teardown(() => { s.destroy() })
  const startDeadline = Date.now() + 60_000
  while ((await realSends()).length === 0 && Date.now() < startDeadline) await sleep(50)
  const sendSeen = Date.now()
  t.ok(sendSeen < startDeadline, 'zfs send started')
  t.equal(ourHolds([snap]).length, 1, 'the snapshot is held while it streams')
  // 2 s idle once the buffers are full; filling them takes a moment too.
  const left = await waitEmpty(realSends, 30_000)
  t.same(left, [], `no zfs send left (gone ${((Date.now() - sendSeen) / 1000).toFixed(1)} s after it started)`)
  t.same(await waitEmpty(() => ourHolds([snap]), 10_000), [], 'no hold left')
  const destroy = await bash(`zfs destroy ${snap}`)
  t.equal(destroy.status, 0, `the snapshot can be destroyed: ${destroy.stderr}`)
})

t.test('item 13: global download limit: a third concurrent download gets 503 and changes nothing; whole again after', async (t) => {
  const a = await startAgent(t, { config: { maxDownloads: 2 } })
  const P = a.pool
  const snaps = ['l1', 'l2', 'l3'].map((n) => volumeWithSnapshot(`${P}/guests/${n}`, { sizeMiB: 32, fillMiB: 16 }))
  const url = (n: string) => `${a.url}/snapshots/download?id=guests/${n}@s`
  // Two different snapshots: the per-snapshot limit (4) is not what refuses the third.
  const one = await pausedDownload(url('l1'))
  const two = await pausedDownload(url('l2'))
  t.same([one.status, two.status], [200, 200], 'two downloads running')
  const before = zfsState([P])
  const third = await fullDownload(url('l3'))
  t.equal(third.status, 503, 'the third, of another snapshot, is refused')
  t.match(third.body, /^busy: 2 downloads running, try again later/)
  t.same(zfsState([P]), before, 'nothing changed by the refusal (no hold on l3)')
  t.same(ourHolds([snaps[2]!]), [])
  one.cut()
  two.cut()
  t.same(await waitEmpty(realSends), [], 'the two cut downloads are gone')
  t.same(await waitEmpty(() => ourHolds(snaps)), [], 'and their holds')
  const raw = (await bash(`zfs send ${snaps[2]} | sha256sum`)).stdout.split(' ')[0]
  const again = await Promise.all([fullDownload(url('l3')), fullDownload(url('l1'))])
  t.same(again.map((r) => r.status), [200, 200], 'two at once are accepted again')
  t.equal(again[0]!.sha, raw, 'and l3 is bit-identical to zfs send')
})

t.test('item 13: HEAD is answered from the estimate alone: no zfs send, no hold', async (t) => {
  const a = await startAgent(t)
  const P = a.pool
  const snap = volumeWithSnapshot(`${P}/guests/hd`, { sizeMiB: 32, fillMiB: 16 })
  const estimate = Number(/^size\s+(\d+)$/m.exec(sh('zfs', ['send', '-n', '-P', snap]))?.[1])
  const before = zfsState([P])
  let sawSend = false
  let sawHold = false
  let stop = false
  const watch = setInterval(() => { void realSends().then((s) => { if (s.length) sawSend = true }) }, 20)
  // Holds polled too (async: the agent serves from this process).
  const holdWatch = (async () => {
    while (!stop) { const r = await bash(`zfs holds -H ${snap}`); if (r.stdout.includes(HOLD_PREFIX)) sawHold = true; await sleep(20) }
  })()
  const r = await request(`${a.url}/snapshots/download?id=guests/hd@s`, { method: 'HEAD' })
  await sleep(300) // a send started by the HEAD would still be running now
  clearInterval(watch)
  stop = true
  await holdWatch
  t.equal(r.status, 200)
  t.equal(r.headers['x-estimated-size'], String(estimate), 'X-Estimated-Size is zfs send -nP\'s')
  t.equal(r.headers['x-send-kind'], 'full')
  t.equal(r.headers['x-snapshot'], snap)
  t.equal(sawSend, false, 'no zfs send was started')
  t.equal(sawHold, false, 'no hold was taken')
  t.same(zfsState([P]), before, 'nothing changed')
  const missing = await request(`${a.url}/snapshots/download?id=guests/hd@nope`, { method: 'HEAD' })
  t.equal(missing.status, 404, 'a missing snapshot is a 404 on HEAD too')
})
