// The image service over S3 blobs (real Ceph RGW): downloads and the content-addressed
// /blobs/sha256/<hex> route (headers, Range, HEAD, 304, 400/404), a record whose object was
// deleted from the bucket (a clear error, never a truncated 200), and RGW stopped in the middle
// of an upload (the image never becomes complete, the client gets an error, a retry succeeds).
import t from 'tap'
import { createHash } from 'node:crypto'
import { request } from 'node:http'
import { DeleteObjectCommand } from '@aws-sdk/client-s3'
import { S3Blobs } from '../../src/image-service/store/s3-blobs.js'
import { bytes, collect, s3Url, startCeph, uniqueBucket } from '../helpers/fleet.js'
import { delay, getJson, nativeUpload, startTestService, type TestContext } from '../helpers/image-service.js'

const MiB = 1024 ** 2
const ceph = await startCeph(t)

async function service(t: TestContext) {
  const bucket = uniqueBucket('svc')
  const svc = await startTestService(t, { blobs: s3Url(ceph, bucket, 'svc/') })
  return { ...svc, bucket }
}

t.test('download and /blobs/sha256/<hex>: headers, Range, HEAD, 304, refusals', async (t) => {
  const { native } = await service(t)
  const data = await collect(bytes(2 * MiB + 11, 64 * 1024, 5))
  const sha = createHash('sha256').update(data).digest('hex')
  const up = await nativeUpload(native, data)
  t.equal(up.status, 200, 'uploaded')
  t.equal(up.body.status, 'complete')
  t.equal(up.body.sha256, sha)

  const dl = await fetch(`${native}/images/${up.body.id}/download`)
  t.equal(dl.status, 200)
  t.equal(dl.headers.get('x-image-sha256'), sha, '/images/<id>/download names its sha256')
  t.same(Buffer.from(await dl.arrayBuffer()), data, 'download round-trips through S3')

  const url = `${native}/blobs/sha256/${sha}`
  const r = await fetch(url)
  t.equal(r.status, 200)
  t.equal(r.headers.get('etag'), `"${sha}"`)
  t.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable')
  t.equal(r.headers.get('accept-ranges'), 'bytes')
  t.equal(r.headers.get('x-image-sha256'), sha)
  t.equal(r.headers.get('content-length'), String(data.length))
  t.same(Buffer.from(await r.arrayBuffer()), data, 'the bytes with that digest')
  const upper = await fetch(`${native}/blobs/sha256/${sha.toUpperCase()}`)
  t.equal(upper.status, 200, 'hex in capitals names the same blob')
  await upper.arrayBuffer()

  const part = await fetch(url, { headers: { range: 'bytes=1000-1999' } })
  t.equal(part.status, 206)
  t.equal(part.headers.get('content-range'), `bytes 1000-1999/${data.length}`)
  t.same(Buffer.from(await part.arrayBuffer()), data.subarray(1000, 2000), 'a ranged read is exactly its bytes')
  const tail = await fetch(url, { headers: { range: 'bytes=-5' } })
  t.same(Buffer.from(await tail.arrayBuffer()), data.subarray(data.length - 5))
  const beyond = await fetch(url, { headers: { range: `bytes=${data.length}-` } })
  t.equal(beyond.status, 416, 'a range past the end → 416')
  await beyond.arrayBuffer()

  const head = await fetch(url, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers.get('content-length'), String(data.length), 'HEAD: the length, no body')
  const same = await fetch(url, { headers: { 'if-none-match': `"${sha}"` } })
  t.equal(same.status, 304, 'If-None-Match → 304')

  const bad = await getJson(`${native}/blobs/sha256/xyz`)
  t.equal(bad.status, 400, 'not 64 hex digits → 400')
  t.match(bad.body, { message: /sha256/ })
  const unknown = await getJson(`${native}/blobs/sha256/${'0'.repeat(64)}`)
  t.equal(unknown.status, 404, 'no image with that digest → 404')

  const metrics = await (await fetch(`${native}/metrics`)).text()
  t.match(metrics, /image_service_blob_written_bytes_total\{backend="s3"\} \d+/, 'bytes written counted per backend')
  t.match(metrics, /image_service_blob_read_bytes_total\{backend="s3"\} \d+/, 'bytes read counted per backend')
})

t.test('Glance upload, download and delete over S3', async (t) => {
  const { glance, bucket } = await service(t)
  const data = await collect(bytes(1 * MiB + 1, 64 * 1024, 8))
  const created = await getJson(`${glance}/v2/images`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ disk_format: 'raw', container_format: 'bare', name: 'g' }),
  })
  t.equal(created.status, 201)
  const id = created.body.id as string
  const put = await fetch(`${glance}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data as NonNullable<RequestInit['body']> })
  t.equal(put.status, 204)
  const got = await getJson(`${glance}/v2/images/${id}`)
  t.equal(got.body.status, 'active')
  t.equal(got.body.checksum, createHash('md5').update(data).digest('hex'))
  const dl = await fetch(`${glance}/v2/images/${id}/file`, { headers: { range: 'bytes=5-9' } })
  t.equal(dl.status, 206)
  t.same(Buffer.from(await dl.arrayBuffer()), data.subarray(5, 10))
  t.equal((await fetch(`${glance}/v2/images/${id}`, { method: 'DELETE' })).status, 204)
  const s3 = new S3Blobs({ bucket, prefix: 'svc/', endpoint: ceph.endpoint })
  t.teardown(() => s3.close())
  t.equal(await s3.exists(id), false, 'the object went with the image')
})

t.test('a complete record whose object was deleted from the bucket: a clear error, never a truncated 200', async (t) => {
  const { native, bucket } = await service(t)
  const data = await collect(bytes(300 * 1024, 64 * 1024, 6))
  const up = await nativeUpload(native, data)
  t.equal(up.body.status, 'complete')
  const s3 = new S3Blobs({ bucket, endpoint: ceph.endpoint })
  t.teardown(() => s3.close())
  await s3.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `svc/images/${up.body.id}` }))

  for (const url of [`${native}/images/${up.body.id}/download`, `${native}/blobs/sha256/${up.body.sha256}`]) {
    const r = await getJson(url)
    t.equal(r.status, 500, `${url.replace(native, '')}: 500, not 200`)
    t.match(r.body, { message: /missing from the blob store/ }, 'with a message that says why')
    t.notOk(r.headers.get('content-range'), 'no partial body either')
  }
  const ranged = await getJson(`${native}/images/${up.body.id}/download`, { headers: { range: 'bytes=0-9' } })
  t.equal(ranged.status, 500, 'a Range request too')
})

/** PUT `total` bytes, paced; `midway` runs once `at` bytes went out. Resolves with what the client saw. */
function pacedUpload(native: string, total: number, at: number, midway: () => Promise<void>): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request(`${native}/images`, { method: 'PUT', headers: { 'x-image-type': 'kvm', 'content-length': String(total) } })
    let settled = false
    const done = (v: { status?: number; body?: string; error?: string }): void => { if (!settled) { settled = true; resolve(v) } }
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => done({ status: res.statusCode as number, body }))
      res.on('error', (e) => done({ error: e.message }))
    })
    req.on('error', (e) => done({ error: e.message }))
    void (async () => {
      let sent = 0
      let fired = false
      for await (const chunk of bytes(total, 256 * 1024, 11)) {
        if (settled || req.destroyed) return
        if (!req.write(chunk)) await new Promise((r) => req.once('drain', r))
        sent += chunk.length
        if (!fired && sent >= at) { fired = true; await midway() }
        await delay(2)
      }
      req.end()
    })().catch((e: unknown) => done({ error: String(e) }))
  })
}

t.test('RGW stopped during an upload: never complete, the client gets an error; after RGW is back a retry succeeds', { skip: ceph.dir === undefined ? 'CEPH_DIR unset: cannot stop radosgw' : false }, async (t) => {
  const { native } = await service(t)
  const total = 40 * MiB
  let rgwDown = false
  t.teardown(async () => { if (rgwDown) await ceph.startRgw() })
  const seen = await pacedUpload(native, total, 12 * MiB, async () => { await ceph.stopRgw(); rgwDown = true })
  t.comment(`client saw: ${JSON.stringify(seen).slice(0, 300)}`)
  // The service answers while the client is still sending: the client reads the 503, or its write fails first.
  if (seen.status !== undefined) {
    t.equal(seen.status, 503, 'the client gets 503')
    t.match(seen.body, /blob store unavailable/, 'saying the blob store failed')
  } else {
    t.ok(seen.error, `the client's upload failed: ${seen.error}`)
  }

  const list = await getJson(`${native}/images`)
  t.equal(list.body.length, 1, 'one record')
  const rec = list.body[0]
  t.not(rec.status, 'complete', 'the image never became complete')
  t.equal(rec.status, 'error', 'it is marked error')
  t.match(rec.error, /S3 upload/, `the record says why: ${rec.error}`)
  const dl = await getJson(`${native}/images/${rec.id}/download`)
  t.not(dl.status, 200, 'nothing to download')

  await ceph.startRgw()
  rgwDown = false
  const want = createHash('sha256')
  for await (const b of bytes(total, 256 * 1024, 11)) want.update(b)
  const retry = await pacedUpload(native, total, total + 1, async () => {})
  t.equal(retry.status, 200, 'the retry succeeds')
  const done = JSON.parse(retry.body ?? '{}')
  t.equal(done.status, 'complete')
  t.equal(done.sha256, want.digest('hex'), 'with the right digest')
  const back = createHash('sha256')
  const r = await fetch(`${native}/blobs/sha256/${done.sha256}`)
  for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) back.update(c)
  t.equal(back.digest('hex'), done.sha256, 'and its bytes read back from S3')
})
