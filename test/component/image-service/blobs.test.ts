// The blob seam with the default directory store (no engines): the BlobStore interface,
// GET /blobs/sha256/<hex> and /metrics, a record whose file vanished, and --blobs parsing.
// The S3 store is tested against real Ceph RGW in test/fleet.
import t from 'tap'
import { createHash } from 'node:crypto'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseConfig } from '../../../src/image-service/config.js'
import { parseBlobsUrl } from '../../../src/image-service/store/blobs-url.js'
import { ImageFiles } from '../../../src/image-service/store/files.js'
import { incrementKey, writeBlob } from '../../../src/image-service/store/blobs.js'
import { getJson, nativeUpload, startTestService, tempDir } from '../../helpers/image-service.js'

const ID = '3f2c1d7e-8a9b-4c0d-9e1f-2a3b4c5d6e7f'

async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of src) parts.push(Buffer.from(c))
  return Buffer.concat(parts)
}

t.test('directory store through the interface: stage, open/stream ranges, exists, health', async (t) => {
  const files = new ImageFiles(tempDir(t))
  await files.init()
  await files.health()
  const staged = await files.stage(ID, Readable.from([Buffer.from('0123456789')]))
  t.equal(await files.exists(ID), false, 'staged bytes are not visible')
  await staged.commit()
  t.equal(await files.exists(ID), true)
  const a = await files.open(ID)
  if (!a) throw new Error('not opened')
  t.equal(a.size, 10)
  t.equal((await collect(await a.stream(2, 4))).toString(), '234', 'a range, end inclusive')
  await a.close()
  const b = await files.open(ID)
  await b?.close()
  await b?.close()
  t.pass('close without stream, twice, is fine')
})

t.test('directory store: an increment is a second blob under a key derived from its digest', async (t) => {
  const files = new ImageFiles(tempDir(t))
  await files.init()
  await writeBlob(files, ID, Readable.from([Buffer.from('full')]))
  const staged = await files.stage(ID, Readable.from([Buffer.from('incr')]))
  const key = incrementKey(ID, staged.data.sha256)
  await staged.commit(key)
  t.equal((await collect(await (await files.open(key))!.stream(0, 3))).toString(), 'incr', 'committed under the derived key')
  t.equal((await collect(await (await files.open(ID))!.stream(0, 3))).toString(), 'full', 'the image\'s own blob untouched')
  for (const bad of [`${ID}.increment.${'0'.repeat(63)}`, `${ID}.increment.${'0'.repeat(64)}/x`, `${ID}.other`, `../${ID}`, `${ID.slice(0, 35)}.increment.${'0'.repeat(64)}`]) {
    t.throws(() => files.pathOf(bad), { name: 'InvalidIdError' }, `${bad} is no key`)
  }
  await files.remove(key)
  t.equal(await files.exists(key), false)
  t.equal(await files.exists(ID), true, 'removing the increment leaves the image')
})

t.test('GET /blobs/sha256/<hex> and /metrics on the directory store', async (t) => {
  const { native, dataDir } = await startTestService(t)
  const data = Buffer.from('content addressed bytes')
  const sha = createHash('sha256').update(data).digest('hex')
  const up = await nativeUpload(native, data)
  t.equal(up.body.sha256, sha)

  const r = await fetch(`${native}/blobs/sha256/${sha}`)
  t.equal(r.status, 200)
  t.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable')
  t.equal(r.headers.get('etag'), `"${sha}"`)
  t.equal(r.headers.get('accept-ranges'), 'bytes')
  t.equal(r.headers.get('x-image-sha256'), sha)
  t.equal(r.headers.get('x-image-blake2b512'), createHash('blake2b512').update(data).digest('hex'), 'and the digest agents check')
  t.equal(Buffer.from(await r.arrayBuffer()).toString(), data.toString())
  const part = await fetch(`${native}/blobs/sha256/${sha}`, { headers: { range: 'bytes=0-6' } })
  t.equal(part.status, 206)
  t.equal(await part.text(), 'content')
  t.equal((await getJson(`${native}/blobs/sha256/${sha.slice(1)}`)).status, 400, '63 digits → 400')
  t.equal((await getJson(`${native}/blobs/sha256/${'f'.repeat(64)}`)).status, 404)
  const dl = await fetch(`${native}/images/${up.body.id}/download`)
  t.equal(dl.headers.get('x-image-sha256'), sha, 'the id download names its sha256 too')
  t.equal(dl.headers.get('x-image-blake2b512'), createHash('blake2b512').update(data).digest('hex'))
  await dl.arrayBuffer()

  const metrics = await (await fetch(`${native}/metrics`)).text()
  t.match(metrics, new RegExp(`image_service_blob_written_bytes_total\\{backend="dir"\\} ${data.length}`))
  t.match(metrics, /image_service_blob_read_bytes_total\{backend="dir"\} \d+/)
  t.match(metrics, /image_service_metadata_calls_total\{backend="level",op="put",result="ok"\} [1-9]/, 'metadata calls per backend and outcome')

  rmSync(join(dataDir, 'images', up.body.id))
  const gone = await getJson(`${native}/images/${up.body.id}/download`)
  t.equal(gone.status, 500, 'file gone: 500, not a 200 with nothing')
  t.match(gone.body, { message: /missing from the blob store/ })
  t.equal((await getJson(`${native}/blobs/sha256/${sha}`)).status, 500)
})

t.test('--blobs: dir or s3://, credentials never in the URL', async (t) => {
  t.match(parseConfig([], {}), { blobs: 'dir' }, 'default dir')
  t.match(parseConfig(['--blobs', 's3://images?endpoint=http://127.0.0.1:7480'], {}), { blobs: 's3://images?endpoint=http://127.0.0.1:7480' })
  t.match(parseConfig([], { MISTIFY_IMAGE_SERVICE_BLOBS: 's3://bkt1/x' }), { blobs: 's3://bkt1/x' }, 'from env')
  t.throws(() => parseConfig(['--blobs', 's3://b1'], {}), { name: 'UsageError', message: /bucket name/ })
  t.same(parseBlobsUrl('s3://bkt/some/prefix?endpoint=http://127.0.0.1:9000&region=eu'), {
    kind: 's3', bucket: 'bkt', prefix: 'some/prefix/', endpoint: 'http://127.0.0.1:9000', region: 'eu',
  })
  t.throws(() => parseConfig(['--blobs', 's3://key:secret@bkt'], {}), { name: 'UsageError', message: /AWS_ACCESS_KEY_ID/ })
  t.throws(() => parseConfig(['--blobs', 'file:///x'], {}), { name: 'UsageError', message: /--blobs/ })
  t.throws(() => parseConfig(['--blobs', 's3://bkt?endpoint=ftp://x'], {}), { name: 'UsageError', message: /http/ })
  t.throws(() => parseConfig(['--blobs', 's3://bkt?acl=public'], {}), { name: 'UsageError', message: /unknown parameter/ })
})
