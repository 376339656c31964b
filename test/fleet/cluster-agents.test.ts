// Cluster mode end to end: two image-service replicas over one etcd and one Ceph RGW bucket,
// nginx caching in front (downloads redirected to the immutable /blobs/sha256/<hex>), four agents
// importing the same image through nginx, and a kill -9 of the replica filling the cache
// mid-body: every import completes (resumed), every checksum right.
import t from 'tap'
import { createHash, randomUUID } from 'node:crypto'
import { agentFetch, zfsLike } from '../helpers/agent-fetch.js'
import { etcdCluster } from '../helpers/etcd.js'
import { s3Url, startCeph, startNginx, uniqueBucket } from '../helpers/fleet.js'
import { spawnImageService, uploadWithId } from '../helpers/replicas.js'

const MiB = 1 << 20
const AGENTS = 4
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

const etcd = await etcdCluster(t)
const ceph = await startCeph(t)

async function blobBytesRead(native: string): Promise<number> {
  const text = await fetch(`${native}/metrics`).then((r) => r.text(), () => '')
  const m = /^image_service_blob_read_bytes_total\{backend="s3"\} (\d+)$/m.exec(text)
  return m ? Number(m[1]) : 0
}

t.test('kill -9 of the replica filling the cache during 4 agent imports: all complete, checksums right', async (t) => {
  const args = [
    '--metadata', `etcd://${etcd.endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',')}/mistify-test-${randomUUID()}`,
    '--blobs', s3Url(ceph, uniqueBucket('agents')),
    '--download-redirect', 'on',
  ]
  const replicas = [await spawnImageService(t, args), await spawnImageService(t, args)]
  const img = zfsLike(48 * MiB)
  const id = randomUUID()
  const sum = await uploadWithId(replicas[0]!, id, img)
  t.equal(sum, sha(img))
  const seen = await fetch(`${replicas[1]!.native}/images/${id}`).then((r) => r.json()) as { status: string; sha256: string }
  t.match(seen, { status: 'complete', sha256: sum }, 'the other replica sees the record (etcd) and can read the bytes (same bucket)')
  const health = await fetch(`${replicas[1]!.native}/healthz`)
  t.equal(health.status, 200, 'healthz: etcd and the bucket reachable')
  t.match(await health.json(), { metadata: { backend: 'etcd', status: 'ok' }, blobs: { status: 'ok' } })
  t.match(await fetch(`${replicas[0]!.native}/metrics`).then((r) => r.text()), /image_service_metadata_calls_total\{backend="etcd",op="put",result="ok"\} [1-9]/, 'etcd calls counted')

  // 8 MiB/s per cache fill: the 48 MiB body takes about 6 s, so the kill lands mid-body.
  const nginx = await startNginx(t, replicas.map((r) => r.native.replace(/^http:\/\//, '')), { limitRate: 8 * MiB })
  const agents = Array.from({ length: AGENTS }, () => agentFetch(t, nginx.url))
  const imports = agents.map((a) => a.fetch(id))

  // Whichever replica nginx picked is filling the cache: kill it once it has sent a few MiB.
  let victim: number | undefined
  let sentBeforeKill = 0
  for (const until = Date.now() + 60_000; victim === undefined && Date.now() < until;) {
    const read = await Promise.all(replicas.map((r) => blobBytesRead(r.native)))
    const i = read.findIndex((n) => n >= 4 * MiB)
    if (i >= 0) { victim = i; sentBeforeKill = read[i]! } else await new Promise((r) => setTimeout(r, 50))
  }
  t.ok(victim !== undefined, 'a replica started filling the cache')
  await replicas[victim ?? 0]!.kill()
  t.ok(sentBeforeKill < img.length, `killed mid-body: ${sentBeforeKill} of ${img.length} bytes read from the bucket`)

  const results = await Promise.allSettled(imports)
  results.forEach((r, i) => {
    t.equal(r.status, 'fulfilled', `agent ${i + 1}: import completed${r.status === 'rejected' ? `: ${String(r.reason)}` : ''}`)
    if (r.status === 'fulfilled') t.match(r.value, { id, status: 'complete', sha256: sum }, `agent ${i + 1}: checksum right`)
    t.same(agents[i]!.received.map((x) => [x.bytes, x.sha256]), [[img.length, sum]], `agent ${i + 1}: one zfs receive, the exact bytes`)
  })
  const survivor = replicas[1 - (victim ?? 0)]!
  t.ok(await blobBytesRead(survivor.native) >= img.length - sentBeforeKill, 'the survivor served the rest')
})
