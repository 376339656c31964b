// The S3 blob store against a real Ceph RGW: staging is invisible until commit, discard and
// failures leave nothing, digests and ranged reads are right, a large body streams through in
// bounded memory, and a body above the single-copy limit is committed by a multipart copy.
import t from 'tap'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { ListObjectsV2Command } from '@aws-sdk/client-s3'
import { incrementKey, writeBlob } from '../../src/image-service/store/blobs.js'
import { S3Blobs } from '../../src/image-service/store/s3-blobs.js'
import { bytes, collect, startCeph, uniqueBucket } from '../helpers/fleet.js'

const ID = '3f2c1d7e-8a9b-4c0d-9e1f-2a3b4c5d6e7f'
const OTHER = '11111111-2222-4333-8444-555555555555'
const MiB = 1024 ** 2

const ceph = await startCeph(t)

function store(over: Partial<ConstructorParameters<typeof S3Blobs>[0]> = {}): S3Blobs {
  const s = new S3Blobs({
    bucket: uniqueBucket('blobs'), endpoint: ceph.endpoint, prefix: 'p/',
    credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID as string, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY as string },
    ...over,
  })
  t.teardown(() => s.close())
  return s
}

async function keys(s: S3Blobs): Promise<string[]> {
  const r = await s.client.send(new ListObjectsV2Command({ Bucket: s.bucket }))
  return (r.Contents ?? []).map((o) => o.Key as string).sort()
}

const digests = (b: Buffer) => ({
  size: b.length,
  sha256: createHash('sha256').update(b).digest('hex'),
  md5: createHash('md5').update(b).digest('hex'),
  sha512: createHash('sha512').update(b).digest('hex'),
  blake2b512: createHash('blake2b512').update(b).digest('hex'),
})

t.test('stage is invisible until commit; digests; ranged reads; remove', async (t) => {
  const s = store()
  await s.init()
  await s.health()
  const data = await collect(bytes(3 * MiB + 5, 256 * 1024, 7))
  const staged = await s.stage(ID, Readable.from([data.subarray(0, 1000), data.subarray(1000)]), { expectedSize: data.length })
  t.same(staged.data, digests(data), 'size and digests computed as the bytes passed')
  t.equal(await s.open(ID), undefined, 'nothing visible under the id before commit')
  t.equal(await s.exists(ID), false)
  t.match(await keys(s), [/^p\/tmp\//], 'the bytes wait under a temporary key')
  await staged.commit()
  t.same(await keys(s), [`p/images/${ID}`], 'committed: visible under the id, temporary key gone')
  t.equal(await s.exists(ID), true)

  const opened = await s.open(ID)
  if (!opened) throw new Error('not opened')
  t.equal(opened.size, data.length)
  t.same(await collect(await opened.stream(0, data.length - 1)), data, 'whole body round-trips')
  t.same(await collect(await opened.stream(10, 19)), data.subarray(10, 20), 'a range is exactly its bytes')
  t.same(await collect(await opened.stream(data.length - 3, data.length - 1)), data.subarray(data.length - 3), 'the last bytes')
  await opened.close()

  await s.remove(ID)
  await s.remove(ID)
  t.equal(await s.open(ID), undefined, 'removed; removing twice is fine')
  t.same(await keys(s), [])

  const empty = await s.stage(OTHER, Readable.from([]))
  await empty.commit()
  await empty.commit()
  await empty.discard()
  t.equal(empty.data.size, 0)
  t.equal((await s.open(OTHER))?.size, 0, 'an empty image; commit twice is one commit, discard after it a no-op')
})

t.test('an increment commits under its digest-derived key, beside the image', async (t) => {
  const s = store()
  await s.init()
  await writeBlob(s, ID, Readable.from([Buffer.from('full')]))
  const staged = await s.stage(ID, Readable.from([Buffer.from('incr')]))
  const key = incrementKey(ID, staged.data.sha256)
  await staged.commit(key)
  t.same(await keys(s), [`p/images/${ID}`, `p/images/${key}`], 'two blobs, temporary key gone')
  t.same(await collect(await (await s.open(key))!.stream(0, 3)), Buffer.from('incr'))
  t.same(await collect(await (await s.open(ID))!.stream(0, 3)), Buffer.from('full'), 'the image\'s own blob untouched')
  t.throws(() => s.keyOf(`${ID}.increment.x`), { name: 'InvalidIdError' }, 'only a digest may follow')
  await s.remove(key)
  t.same(await keys(s), [`p/images/${ID}`], 'removed alone')
})

t.test('discard and every refusal leave nothing behind', async (t) => {
  const s = store()
  await s.init()
  const staged = await s.stage(ID, Readable.from([Buffer.from('hello')]))
  await staged.discard()
  t.same(await keys(s), [], 'discard drops the temporary object')
  t.equal(await s.open(ID), undefined)

  await t.rejects(s.stage(OTHER, bytes(12 * MiB), { maxSize: 9 * MiB }), { name: 'TooLargeError' }, 'too large (after a part went up)')
  await t.rejects(s.stage(OTHER, Readable.from([Buffer.alloc(10)]), { expectedSize: 11 }), { name: 'IncompleteError' })
  await t.rejects(s.stage(OTHER, Readable.from([Buffer.alloc(10)]), { isComplete: () => false }), { name: 'IncompleteError' })
  const failing = new Readable({ read() { this.destroy(new Error('boom')) } })
  await t.rejects(s.stage(OTHER, failing), /boom/)
  const ctrl = new AbortController()
  const slow = (async function* () { yield Buffer.alloc(10); ctrl.abort(new Error('client went away')); yield Buffer.alloc(10) })()
  await t.rejects(s.stage(OTHER, slow, { signal: ctrl.signal }), /client went away/)
  t.same(await keys(s), [], 'no object, temporary or visible, after any failure')
  t.throws(() => s.keyOf('../x'), { name: 'InvalidIdError' }, 'ids are checked before they become keys')
})

t.test('a large body streams through in bounded memory', async (t) => {
  const s = store({ partSize: 8 * MiB, queueSize: 2 })
  await s.init()
  const n = 160 * MiB
  const want = createHash('sha256')
  for await (const b of bytes(n, MiB, 3)) want.update(b)
  const expected = want.digest('hex')
  global.gc?.()
  const base = process.memoryUsage().rss
  let peak = base
  const sample = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 20)
  const started = Date.now()
  try {
    const data = await writeBlob(s, ID, bytes(n, MiB, 3))
    t.equal(data.size, n)
    t.equal(data.sha256, expected, 'digest of the streamed body')
  } finally {
    clearInterval(sample)
  }
  const grew = (peak - base) / MiB
  t.comment(`${n / MiB} MiB uploaded in ${Date.now() - started} ms; RSS grew by at most ${grew.toFixed(0)} MiB`)
  t.ok(grew < 80, `memory stays bounded: RSS grew ${grew.toFixed(0)} MiB for a ${n / MiB} MiB body`)

  const opened = await s.open(ID)
  t.equal(opened?.size, n)
  const back = createHash('sha256')
  for await (const c of await (opened as NonNullable<typeof opened>).stream(0, n - 1)) back.update(c as Buffer)
  t.equal(back.digest('hex'), expected, 'read back whole: same digest')
  await s.remove(ID)
})

t.test('above the single-copy limit, commit is a multipart copy (the 5 GiB CopyObject limit)', async (t) => {
  const s = store({ singleCopyLimit: 5 * MiB, copyPartSize: 5 * MiB, partSize: 5 * MiB })
  await s.init()
  const data = await collect(bytes(12 * MiB + 3, MiB, 9))
  const staged = await s.stage(ID, Readable.from([data]))
  await staged.commit()
  t.same(await keys(s), [`p/images/${ID}`])
  const opened = await s.open(ID)
  t.equal(opened?.size, data.length)
  const back = await collect(await (opened as NonNullable<typeof opened>).stream(0, data.length - 1))
  t.equal(createHash('sha256').update(back).digest('hex'), staged.data.sha256, 'copied part by part, byte for byte')
})

t.test('init drops stale temporary objects only', async (t) => {
  const s = store()
  await s.init()
  const staged = await s.stage(ID, Readable.from([Buffer.from('young')]))
  await s.init()
  t.equal((await keys(s)).length, 1, 'a young temporary object (maybe another replica’s) survives init')
  const eager = new S3Blobs({ bucket: s.bucket, prefix: 'p/', endpoint: ceph.endpoint, staleTmpMs: -60_000,
    credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID as string, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY as string } })
  t.teardown(() => eager.close())
  await eager.init()
  t.same(await keys(s), [], 'an old one is dropped')
  await staged.discard()
})
