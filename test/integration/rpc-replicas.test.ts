/**
 * Issue 15 part 4 on real ZFS: an agent given two image service replicas
 * (two mistify-image-service processes holding the same image under the same
 * id) keeps importing when the replica it is reading from is killed with
 * SIGKILL mid-RequestImage: the same `zfs receive` is fed the rest from the
 * other replica (Range + If-Range), the sha256 of the whole stream is
 * checked, and the bytes fetched in all are the image's size. A counting
 * proxy in front of each replica measures those bytes and holds the download
 * at a third, so the kill lands mid-body every time. The host tier runs the
 * same against a fake receive: test/component/agent/replica-failover.test.ts.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { haveZfs, sh } from '../helpers/zpool.js'
import { makeZvolStream, sha256hex, startAgent } from '../helpers/agent.js'
import { spawnImageService, startCountingProxy, Trip, uploadWithId } from '../helpers/replicas.js'

if (!haveZfs) { t.comment('real ZFS only: run inside the VM (npm test does)'); process.exit(0) }

const zfsNames = (root: string) => sh('zfs', ['list', '-H', '-o', 'name', '-t', 'all', '-r', root]).trim().split('\n')

t.test('RequestImage survives the image service replica it reads from being killed mid-body', async (t) => {
  const [sa, sb] = [await spawnImageService(t), await spawnImageService(t)]
  // Both proxies share the trip: whichever replica this agent starts with (random) is the one held and killed.
  const trip = new Trip() // armed below, once the stream's size is known
  const [pa, pb] = [await startCountingProxy(t, sa.native, trip), await startCountingProxy(t, sb.native, trip)]
  const a = await startAgent(t, { config: { imageServer: `${pa.url},${pb.url}` } })

  const stream = makeZvolStream(a.pool, { sizeMiB: 8 })
  const id = randomUUID()
  const sum = await uploadWithId(sa, id, stream)
  t.equal(await uploadWithId(sb, id, stream), sum, 'the same image under the same id on both replicas')
  t.equal(sum, sha256hex(stream))
  trip.arm(Math.floor(stream.length / 3))

  const call = a.call('v1', 'RequestImage', { id })
  const held = await trip.held
  const [dead, alive] = held === pa ? [sa, pb] : [sb, pa]
  t.equal(held.transfers.length, 1, 'the held download is the first request to that replica')
  await dead.kill() // kill -9, mid-RequestImage
  held.cut()
  const r = await call

  t.same(r.result?.images?.[0], {
    id, type: '', volume: `${a.pool}/images/${id}`, snapshot: `${a.pool}/images/${id}@test`, size: 8, status: 'complete', format: 'zfs',
  }, r.error ?? 'imported')
  t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'mistify:sha256', `${a.pool}/images/${id}`]).trim(), sum, 'the sha256 of the whole stream, as published')
  t.same(zfsNames(`${a.pool}/images`).filter((n) => n.includes(id)).sort(), [`${a.pool}/images/${id}`, `${a.pool}/images/${id}@test`], 'the image, no temporaries left')
  t.equal(alive.transfers.length, 1, 'one resume, on the surviving replica')
  t.ok(held.transfers[0]?.etag, 'the image service sends an ETag')
  t.match(alive.transfers[0], { range: `bytes=${trip.atByte}-`, ifRange: held.transfers[0]?.etag, status: 206 }, 'from the first byte not received, If-Range the first answer\'s ETag')
  t.equal(held.bodyBytes(), trip.atByte, 'the killed replica passed on a third')
  t.equal(pa.bodyBytes() + pb.bodyBytes(), stream.length, 'bytes fetched in all == the image\'s size: nothing fetched twice')

  await t.test('with that replica still dead, the next image comes from the other one', async (t) => {
    const id2 = randomUUID()
    const other = makeZvolStream(a.pool)
    const sum2 = await uploadWithId(alive === pa ? sa : sb, id2, other)
    const before = alive.transfers.length
    // The rotation starts this fetch at the other replica than the last one: the dead one, or the live one.
    const r2 = await a.call('v2', 'RequestImage', { id: id2 })
    t.equal(r2.result?.images?.[0]?.status, 'complete', r2.error ?? 'imported')
    t.equal(sh('zfs', ['get', '-H', '-o', 'value', 'mistify:sha256', `${a.pool}/images/${id2}`]).trim(), sum2)
    t.equal(alive.transfers.length, before + 1, 'fetched once, from the live replica')
    t.equal(alive.transfers.at(-1)?.bytes, other.length)
  })
})
