/**
 * The agent's fetch from an image service with several replicas (issue 15
 * part 4), on the host: the real fetch job (jobs/fetch-image.ts: queue,
 * records, importImage) over a zfs whose `receive` takes the stream into a
 * hash, against replicas that are plain HTTP servers (faults on cue) and, at
 * the end, real image-service processes, one killed with SIGKILL mid-body.
 * The same kill runs against real ZFS in test/integration/rpc-replicas.test.ts.
 */
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { DEFAULTS, normaliseImageServers } from '../../../src/agent/config.js'
import { agentFetch, zfsLike, type T } from '../../helpers/agent-fetch.js'
import { freePort, spawnImageService, startCountingProxy, Trip, uploadWithId } from '../../helpers/replicas.js'

const MiB = 1 << 20
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure') }, (e: Error) => e)

interface Seen { range: string | undefined; ifRange: string | undefined; status: number; bytes: number }

/**
 * A replica as the image service answers downloads: ETag "<sha256>",
 * X-Image-Sha256, one Range, If-Range (another ETag: the whole body, 200).
 * `cutAt`: its first download is cut after that many body bytes, `then`
 * called just before (to take replicas down); `status`: every answer.
 */
async function replica(t: T, images: Map<string, Buffer>, o: { cutAt?: number; then?: () => void; status?: number } = {}) {
  const seen: Seen[] = []
  let hits = 0
  let cut = o.cutAt
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    hits++
    const id = /^\/images\/([^/]+)\/download$/.exec(req.url ?? '')?.[1]
    const body = id === undefined ? undefined : images.get(id)
    if (o.status) { res.writeHead(o.status); res.end('replica trouble'); return }
    if (!body) { res.writeHead(404); res.end(); return }
    const etag = `"${sha(body)}"`
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    const ifRange = req.headers['if-range'] as string | undefined
    const start = m && (ifRange === undefined || ifRange === etag) ? Number(m[1]) : 0
    const part = body.subarray(start)
    const x: Seen = { range: req.headers.range, ifRange, status: start ? 206 : 200, bytes: 0 }
    seen.push(x)
    res.writeHead(x.status, {
      'Content-Length': part.length, 'Accept-Ranges': 'bytes', ETag: etag, 'X-Image-Sha256': sha(body),
      ...(start ? { 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    })
    if (cut !== undefined) {
      const upto = Math.min(cut, part.length)
      cut = undefined
      x.bytes = upto
      // The replica dies once these bytes are out.
      res.write(part.subarray(0, upto), () => { o.then?.(); res.socket?.destroy() })
    } else {
      x.bytes = part.length
      res.end(part)
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const close = () => { server.close(); server.closeAllConnections() }
  t.teardown(close)
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, hits: () => hits, close }
}

t.test('a replica that dies mid-body: the same receive goes on from the next one, nothing fetched twice', async (t) => {
  const img = zfsLike(6 * MiB)
  const a = await replica(t, new Map([['img', img]]), { cutAt: 2 * MiB })
  const b = await replica(t, new Map([['img', img]]))
  const agent = agentFetch(t, `${a.url},${b.url}`)
  const rec = await agent.fetch('img')
  t.match(rec, { id: 'img', status: 'complete', sha256: sha(img) })
  t.same(agent.received, [{ name: 'tank/images/_incoming-img', bytes: img.length, sha256: sha(img) }], 'one zfs receive, the exact bytes')
  t.same(a.seen, [{ range: undefined, ifRange: undefined, status: 200, bytes: 2 * MiB }], 'A: the first answer, cut')
  t.same(b.seen, [{ range: `bytes=${2 * MiB}-`, ifRange: `"${sha(img)}"`, status: 206, bytes: img.length - 2 * MiB }], 'B: the rest, from the first byte not received, If-Range the first ETag')
  t.equal(a.seen[0]!.bytes + b.seen[0]!.bytes, img.length, 'bytes served in all == the image: nothing fetched twice')
})

t.test('a replica down at the start, or answering 5xx: the next one serves', async (t) => {
  const img = zfsLike(MiB)
  const sick = await replica(t, new Map([['img', img]]), { status: 503 })
  const b = await replica(t, new Map([['img', img]]))
  for (const [what, bad] of [['down', `http://127.0.0.1:${await freePort()}`], ['503', sick.url]] as const) {
    const agent = agentFetch(t, `${bad},${b.url}`)
    const before = b.seen.length
    t.match(await agent.fetch('img'), { status: 'complete', sha256: sha(img) }, `${what}: imported`)
    t.equal(b.seen.length, before + 1, `${what}: from the second replica`)
    t.same(agent.received.map((r) => r.bytes), [img.length])
  }
  t.equal(sick.hits(), 1, 'the 503 replica was asked once')
})

t.test('the rotation: successive fetches start at successive replicas', async (t) => {
  const imgs = new Map([['i1', zfsLike(1000)], ['i2', zfsLike(1000)], ['i3', zfsLike(1000)], ['i4', zfsLike(1000)]])
  const a = await replica(t, imgs)
  const b = await replica(t, imgs)
  const agent = agentFetch(t, `${a.url},${b.url}`)
  for (const id of imgs.keys()) await agent.fetch(id)
  t.same(a.seen.map((x) => x.range), [undefined, undefined], 'half from A')
  t.same(b.seen.map((x) => x.range), [undefined, undefined], 'half from B')
})

t.test('the rotation holds when the agent asks the records first (increments on): one step per fetch', async (t) => {
  const imgs = new Map([['i1', zfsLike(1000)], ['i2', zfsLike(1000)], ['i3', zfsLike(1000)], ['i4', zfsLike(1000)]])
  const a = await replica(t, imgs)
  const b = await replica(t, imgs)
  const agent = agentFetch(t, `${a.url},${b.url}`, { incrementDepth: 8 })
  for (const id of imgs.keys()) await agent.fetch(id)
  t.equal(a.seen.length, 2, 'half the downloads from A')
  t.equal(b.seen.length, 2, 'half from B')
})

t.test('every replica down: a clear error naming each, at once', async (t) => {
  const [pa, pb] = [await freePort(), await freePort()]
  const agent = agentFetch(t, `127.0.0.1:${pa},127.0.0.1:${pb}`)
  const started = Date.now()
  const e = await failure(agent.fetch('img'))
  t.match(e.message, /^image service: no replica answered: /)
  t.match(e.message, `fetching http://127.0.0.1:${pa}/images/img/download: connect ECONNREFUSED`, 'names the first')
  t.match(e.message, `fetching http://127.0.0.1:${pb}/images/img/download: connect ECONNREFUSED`, 'names the second')
  t.ok(Date.now() - started < 3000, 'no retrying round and round')
  t.same(agent.received, [], 'no receive finished')
})

t.test('every replica gone mid-body: bounded attempts, each replica named', async (t) => {
  const img = zfsLike(4 * MiB)
  const both = () => { a.close(); b.close() }
  const a = await replica(t, new Map([['img', img]]), { cutAt: MiB, then: both })
  const b = await replica(t, new Map([['img', img]]))
  const agent = agentFetch(t, `${a.url},${b.url}`)
  const e = await failure(agent.fetch('img'))
  t.match(e.message, new RegExp(`^image source ${a.url}/images/img/download: (aborted|connection closed early) after ${MiB} bytes; resuming at byte ${MiB} failed: `))
  t.match(e.message, `fetching ${a.url}/images/img/download: connect ECONNREFUSED`, 'names A')
  t.match(e.message, `fetching ${b.url}/images/img/download: connect ECONNREFUSED`, 'names B')
  t.same(agent.received, [], 'nothing imported')
  t.ok(agent.fed().equals(img.subarray(0, MiB)), 'the receive was fed the first MiB, once')
})

t.test('another image under the id on the next replica: refused (If-Range), never spliced in', async (t) => {
  const img = zfsLike(4 * MiB)
  const other = zfsLike(4 * MiB)
  const a = await replica(t, new Map([['img', img]]), { cutAt: MiB, then: () => a.close() })
  const b = await replica(t, new Map([['img', other]]))
  const agent = agentFetch(t, `${a.url},${b.url}`)
  const e = await failure(agent.fetch('img'))
  t.match(e.message, `image source ${b.url}/images/img/download: the image changed while it was being fetched (ETag "${sha(img)}" → "${sha(other)}"); not spliced in`)
  t.ok(b.seen.length >= 1, 'B was asked to resume')
  for (const x of b.seen) t.match(x, { range: `bytes=${MiB}-`, ifRange: `"${sha(img)}"`, status: 200 }, 'with If-Range, and answered with its whole other body')
  t.same(agent.received, [], 'nothing imported')
  t.ok(agent.fed().equals(img.subarray(0, MiB)), 'the receive was fed only A\'s bytes')
})

t.test('a single replica: as before, resumed from the same URL', async (t) => {
  const img = zfsLike(3 * MiB)
  const a = await replica(t, new Map([['img', img]]), { cutAt: MiB })
  const agent = agentFetch(t, a.url)
  t.match(await agent.fetch('img'), { status: 'complete', sha256: sha(img) })
  t.same(a.seen.map((x) => [x.range, x.status, x.bytes]), [[undefined, 200, MiB], [`bytes=${MiB}-`, 206, img.length - MiB]])
})

t.test('real image-service processes: one SIGKILLed mid-body, the import completes from the other', async (t) => {
  const img = zfsLike(12 * MiB)
  const id = '3f2504e0-4f89-41d3-9a0c-0305e82c3301'
  const [sa, sb] = [await spawnImageService(t), await spawnImageService(t)]
  const sum = await uploadWithId(sa, id, img)
  t.equal(await uploadWithId(sb, id, img), sum, 'the same image, same id, on both')
  t.equal(sum, sha(img))
  const trip = new Trip(Math.floor(img.length / 3))
  const [pa, pb] = [await startCountingProxy(t, sa.native, trip), await startCountingProxy(t, sb.native, trip)]
  // A slow receive: when the connection ends, bytes that arrived are still waiting in the agent's buffers.
  const agent = agentFetch(t, `${pa.url},${pb.url}`, { slowMs: 10 })
  const fetching = agent.fetch(id)
  const held = await trip.held
  await (held === pa ? sa : sb).kill()
  held.cut()
  const rec = await fetching
  t.match(rec, { id, status: 'complete', sha256: sum })
  t.same(agent.received, [{ name: `tank/images/_incoming-${id}`, bytes: img.length, sha256: sum }], 'one receive, the exact bytes')
  const other = held === pa ? pb : pa
  t.equal(held.transfers.length, 1)
  t.equal(other.transfers.length, 1, 'one resume, on the surviving replica')
  t.ok(held.transfers[0]?.etag, 'the image service sends an ETag')
  t.match(other.transfers[0], { range: `bytes=${trip.atByte}-`, ifRange: held.transfers[0]?.etag, status: 206 }, 'If-Range: the first answer\'s ETag')
  t.equal(pa.bodyBytes() + pb.bodyBytes(), img.length, 'bytes fetched in all == the image size: nothing fetched twice')
})
