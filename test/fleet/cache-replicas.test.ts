// Two image-service replicas over one S3 bucket (real Ceph RGW), nginx caching in front:
// 8 concurrent clients pulling the same /blobs/sha256/<hex> through nginx cost the origin exactly
// one full transfer; 8 clients straight to the replicas cost 8. Origin bytes are what the
// replicas read from the blob store (image_service_blob_read_bytes_total on GET /metrics).
import t from 'tap'
import { createHash } from 'node:crypto'
import { bytes, collect, s3Url, startCeph, startNginx, uniqueBucket } from '../helpers/fleet.js'
import { nativeUpload, startTestService } from '../helpers/image-service.js'

const MiB = 1024 ** 2
const CLIENTS = 8
const ceph = await startCeph(t)

async function originBytes(native: string): Promise<number> {
  const text = await (await fetch(`${native}/metrics`)).text()
  const m = /^image_service_blob_read_bytes_total\{backend="s3"\} (\d+)$/m.exec(text)
  return m ? Number(m[1]) : 0
}

async function pull(url: string): Promise<{ status: number; sha256: string; cache: string | null }> {
  const r = await fetch(url)
  const h = createHash('sha256')
  for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) h.update(c)
  return { status: r.status, sha256: h.digest('hex'), cache: r.headers.get('x-cache-status') }
}

t.test('nginx in front of two replicas: 8 concurrent pulls cost the origin one transfer', async (t) => {
  const blobs = s3Url(ceph, uniqueBucket('fleet'), 'fleet/')
  // Each replica has metadata of its own here; both learn the image by an upload of the same bytes,
  // and content addressing makes either one's copy the answer to /blobs/sha256/<hex>.
  const r1 = await startTestService(t, { blobs })
  const r2 = await startTestService(t, { blobs })
  const data = await collect(bytes(16 * MiB, MiB, 21))
  const sha = createHash('sha256').update(data).digest('hex')
  for (const r of [r1, r2]) {
    const up = await nativeUpload(r.native, data)
    t.equal(up.body.status, 'complete', `uploaded through ${r.native}`)
    t.equal(up.body.sha256, sha)
  }
  const replicas = [r1.native, r2.native]
  const nginx = await startNginx(t, replicas.map((u) => u.replace(/^http:\/\//, '')))
  const total = async (): Promise<number> => (await Promise.all(replicas.map(originBytes))).reduce((a, b) => a + b, 0)

  const before = await total()
  const cached = await Promise.all(Array.from({ length: CLIENTS }, () => pull(`${nginx.url}/blobs/sha256/${sha}`)))
  const viaCache = (await total()) - before
  for (const c of cached) {
    t.equal(c.status, 200)
    t.equal(c.sha256, sha, 'every client got the whole body')
  }
  const statuses = cached.map((c) => c.cache).sort()
  t.comment(`through nginx: ${CLIENTS} clients, cache statuses ${statuses.join(',')}`)
  t.equal(statuses.filter((s) => s === 'MISS').length, 1, 'one miss, the rest waited on the cache lock')

  const again = await fetch(`${nginx.url}/blobs/sha256/${sha}`, { headers: { range: 'bytes=100-199' } })
  t.equal(again.status, 206, 'a Range request is served from the cache')
  t.same(Buffer.from(await again.arrayBuffer()), data.subarray(100, 200))
  t.equal((await total()) - before, viaCache, 'and costs the origin nothing')

  const before2 = await total()
  const direct = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => pull(`${replicas[i % 2]}/blobs/sha256/${sha}`)))
  const noCache = (await total()) - before2
  for (const c of direct) t.equal(c.sha256, sha)

  t.comment(`origin bytes for ${CLIENTS} clients of a ${data.length}-byte blob: with nginx cache ${viaCache}, without ${noCache}`)
  console.log(`# origin bytes, ${CLIENTS} clients x ${data.length} B: with cache ${viaCache}, without cache ${noCache}`)
  t.equal(viaCache, data.length, 'with the cache: exactly one full transfer from the origin')
  t.equal(noCache, CLIENTS * data.length, `without: ${CLIENTS} transfers`)
})
