// Issue 16, image service half: images as zfs increments of earlier ones. Stream headers are
// built here as zfs 2.1 writes them (as test/unit/fetch/payload.test.ts does); no ZFS needed.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { getJson, nativeUpload, startTestService, type TestService } from '../../helpers/image-service.js'

const GUID_A = 0xc6e9c113b057c99bn
const GUID_B = 0x1d2c3b4a59687766n
const GUID_C = 0x0123456789abcdefn

interface Head {
  toguid: bigint
  fromguid?: bigint
  /** DRR_FLAG_CLONE is 1. */
  flags?: number
  /** 1 = a substream (plain), 2 = compound (zfs send -R / -p). */
  hdrtype?: bigint
  be?: boolean
}

/** A DRR_BEGIN record (312 bytes) and `payload` bytes after it. */
function zfsStream(h: Head, payload = 4000): Buffer {
  const b = Buffer.concat([Buffer.alloc(312), randomBytes(payload)])
  const w64 = (v: bigint, at: number) => (h.be ? b.writeBigUInt64BE(v, at) : b.writeBigUInt64LE(v, at))
  w64(0x2f5bacbacn, 8)
  w64((0x11n << 2n) | (h.hdrtype ?? 1n), 16) // feature flags above the header type
  if (h.be) b.writeUInt32BE(h.flags ?? 0, 36); else b.writeUInt32LE(h.flags ?? 0, 36)
  w64(h.toguid, 40)
  w64(h.fromguid ?? 0n, 48)
  return b
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function putIncrement(native: string, id: string, origin: string | undefined, body: Buffer): Promise<{ status: number; body: any; headers: Headers }> {
  return getJson(`${native}/images/${id}/increment`, {
    method: 'PUT', headers: origin === undefined ? {} : { 'x-image-origin': origin }, body: body as NonNullable<RequestInit['body']>,
  })
}

/** Send `body` in chunks of `size` bytes, chunked (no Content-Length), as a piped `zfs send` would. */
async function chunkedPut(url: string, headers: Record<string, string>, body: Buffer, size: number): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString() || 'null') }))
    })
    req.on('error', reject)
    const send = (at: number): void => {
      if (at >= body.length) { req.end(); return }
      req.write(body.subarray(at, at + size), () => setImmediate(() => send(at + size)))
    }
    send(0)
  })
}

/** What a refusal must leave alone: both records and every stored file. */
async function snapshot(s: TestService, ...ids: string[]): Promise<unknown> {
  const recs = await Promise.all(ids.map(async (id) => (await getJson(`${s.native}/images/${id}`)).body))
  return { recs, images: readdirSync(join(s.dataDir, 'images')).sort(), tmp: readdirSync(join(s.dataDir, 'tmp')).sort() }
}

/** A base image (guid A) and a newer one (guid B), both plain full streams. */
async function pair(s: TestService): Promise<{ base: any; next: any; inc: Buffer }> {
  const base = (await nativeUpload(s.native, zfsStream({ toguid: GUID_A }), { 'x-image-name': 'debian' })).body
  const next = (await nativeUpload(s.native, zfsStream({ toguid: GUID_B }), { 'x-image-name': 'debian' })).body
  return { base, next, inc: zfsStream({ fromguid: GUID_A, toguid: GUID_B }, 1500) }
}

t.test('snapshot_guid: set from a plain full stream, empty for anything else', async (t) => {
  const s = await startTestService(t)
  const full = await nativeUpload(s.native, zfsStream({ toguid: GUID_A }))
  t.equal(full.status, 200)
  t.equal(full.body.snapshot_guid, GUID_A.toString(), 'the BEGIN record\'s toguid, in decimal')
  t.equal(full.body.origin, '')
  t.equal(full.body.increment, null)
  t.equal((await nativeUpload(s.native, zfsStream({ toguid: GUID_B, be: true }))).body.snapshot_guid, GUID_B.toString(), 'from a big-endian sender too')

  const raw = await nativeUpload(s.native, randomBytes(5000))
  t.same([raw.body.snapshot_guid, raw.body.origin, raw.body.increment], ['', '', null], 'a raw body: no lineage')
  const cases: Array<[string, Buffer]> = [
    ['gzip of a stream', gzipSync(zfsStream({ toguid: GUID_A }))],
    ['an incremental stream', zfsStream({ toguid: GUID_B, fromguid: GUID_A })],
    ['a clone stream', zfsStream({ toguid: GUID_B, fromguid: GUID_A, flags: 1 })],
    ['a compound stream', zfsStream({ toguid: GUID_A, hdrtype: 2n })],
    ['a stream cut inside its first record', zfsStream({ toguid: GUID_A }).subarray(0, 200)],
  ]
  for (const [what, body] of cases) {
    const r = await nativeUpload(s.native, body)
    t.equal(r.status, 200, `${what} is stored`)
    t.equal(r.body.snapshot_guid, '', `${what}: no snapshot_guid`)
  }

  // The header arriving in pieces (a piped zfs send, chunked) is read all the same.
  const split = await chunkedPut(`${s.native}/images`, { 'x-image-type': 'kvm' }, zfsStream({ toguid: GUID_C }), 100)
  t.equal(split.status, 200)
  t.equal(split.body.snapshot_guid, GUID_C.toString(), 'first record split over chunks of 100 bytes')

  // Both views: Glance shows the lineage only when set.
  const g = (await getJson(`${s.glance}/v2/images/${full.body.id}`)).body
  t.equal(g.mistify_snapshot_guid, GUID_A.toString())
  t.notOk('mistify_origin' in g, 'no origin, no property')
  t.notOk('mistify_snapshot_guid' in (await getJson(`${s.glance}/v2/images/${raw.body.id}`)).body)
})

t.test('an increment is stored, linked and served', async (t) => {
  const s = await startTestService(t)
  const { base, next, inc } = await pair(s)
  const up = await putIncrement(s.native, next.id, base.id, inc)
  t.equal(up.status, 200, JSON.stringify(up.body))
  t.equal(up.body.id, next.id)
  t.equal(up.body.origin, base.id)
  t.same(up.body.increment, { from_guid: GUID_A.toString(), size: inc.length, sha256: sha256(inc), blake2b512: createHash('blake2b512').update(inc).digest('hex') })
  t.equal(up.body.sha256, next.sha256, 'the full stream is untouched')
  t.same((await getJson(`${s.native}/images/${next.id}`)).body, up.body, 'the record says so')
  t.equal((await getJson(`${s.native}/images/${base.id}`)).body.increment, null, 'the origin is unchanged')

  const dl = await fetch(`${s.native}/images/${next.id}/increment`)
  t.equal(dl.status, 200)
  t.same(Buffer.from(await dl.arrayBuffer()), inc, 'the increment\'s bytes')
  t.equal(dl.headers.get('content-length'), String(inc.length))
  t.equal(dl.headers.get('x-image-id'), next.id)
  t.equal(dl.headers.get('x-image-sha256'), sha256(inc))
  t.equal(dl.headers.get('x-image-blake2b512'), createHash('blake2b512').update(inc).digest('hex'))
  t.equal(dl.headers.get('x-image-origin'), base.id)
  t.equal(dl.headers.get('x-image-from-guid'), GUID_A.toString())
  t.equal(dl.headers.get('x-image-snapshot-guid'), GUID_B.toString())
  t.equal(dl.headers.get('etag'), `"${sha256(inc)}"`)

  const head = await fetch(`${s.native}/images/${next.id}/increment`, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers.get('content-length'), String(inc.length))
  t.equal(head.headers.get('x-image-from-guid'), GUID_A.toString())
  t.equal((await head.arrayBuffer()).byteLength, 0, 'HEAD: no body')

  const part = await fetch(`${s.native}/images/${next.id}/increment`, { headers: { range: 'bytes=300-399' } })
  t.equal(part.status, 206)
  t.equal(part.headers.get('content-range'), `bytes 300-399/${inc.length}`)
  t.same(Buffer.from(await part.arrayBuffer()), inc.subarray(300, 400))
  t.equal((await fetch(`${s.native}/images/${next.id}/increment`, { headers: { range: `bytes=${inc.length}-` } })).status, 416)

  const none = await getJson(`${s.native}/images/${base.id}/increment`)
  t.equal(none.status, 404)
  t.same(none.body, { message: 'no increment', code: 404, stack: [] })
  t.equal((await fetch(`${s.native}/images/${base.id}/increment`, { method: 'HEAD' })).status, 404)

  const full = await fetch(`${s.native}/images/${next.id}/download`)
  t.equal(full.headers.get('x-image-sha256'), next.sha256, 'the full download still serves the full stream')
  t.equal((await full.arrayBuffer()).byteLength, next.size)

  const byDigest = await fetch(`${s.native}/blobs/sha256/${sha256(inc)}`)
  t.equal(byDigest.status, 200, '/blobs/sha256 finds an increment by its digest')
  t.same(Buffer.from(await byDigest.arrayBuffer()), inc)
  t.equal(byDigest.headers.get('cache-control'), 'public, max-age=31536000, immutable')

  const g = (await getJson(`${s.glance}/v2/images/${next.id}`)).body
  t.equal(g.mistify_origin, base.id)
  t.equal(g.mistify_snapshot_guid, GUID_B.toString())
  t.equal(g.mistify_increment_size, inc.length, 'a number, as the schema says')
  const schema = (await getJson(`${s.glance}/v2/schemas/image`)).body
  t.equal(schema.properties.mistify_increment_size.type, 'integer')
  for (const [k, v] of Object.entries(g)) {
    if (!(k in schema.properties)) t.equal(typeof v, 'string', `${k}: an additional property is a string`)
  }
  const listed = (await getJson(`${s.glance}/v2/images?mistify_increment_size=${inc.length}`)).body.images
  t.same(listed.map((x: any) => x.id), [next.id], 'the size filters as any custom property')
})

t.test('the increment travels chunked and in small pieces too', async (t) => {
  const s = await startTestService(t)
  const { base, next, inc } = await pair(s)
  const r = await chunkedPut(`${s.native}/images/${next.id}/increment`, { 'x-image-origin': base.id }, inc, 97)
  t.equal(r.status, 200, JSON.stringify(r.body))
  t.equal(r.body.increment.sha256, sha256(inc))
  t.same(Buffer.from(await (await fetch(`${s.native}/images/${next.id}/increment`)).arrayBuffer()), inc)
})

t.test('refusals: a clear message, nothing stored, nothing changed', async (t) => {
  const s = await startTestService(t, { maxUploadSize: 20_000 })
  const { base, next, inc } = await pair(s)
  const raw = (await nativeUpload(s.native, randomBytes(3000))).body
  const queued = (await getJson(`${s.glance}/v2/images`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'q', disk_format: 'raw', container_format: 'bare' }),
  })).body
  const before = await snapshot(s, base.id, next.id, raw.id, queued.id)

  const refused = async (what: string, id: string, origin: string | undefined, body: Buffer, status: number, message: RegExp): Promise<void> => {
    const r = await putIncrement(s.native, id, origin, body)
    t.equal(r.status, status, `${what}: ${status}`)
    t.match(r.body, { message }, `${what}: ${String(r.body?.message)}`)
    t.same(await snapshot(s, base.id, next.id, raw.id, queued.id), before, `${what}: nothing changed`)
  }
  const missing = '00000000-0000-4000-8000-000000000000'
  await refused('unknown image', missing, base.id, inc, 404, /^image not found$/)
  await refused('no origin header', next.id, undefined, inc, 400, /X-Image-Origin header missing/)
  await refused('origin not an id', next.id, '../etc', inc, 400, /is not an image id/)
  await refused('image incomplete', queued.id, base.id, inc, 409, new RegExp(`image ${queued.id} is not complete`))
  await refused('image without snapshot_guid', raw.id, base.id, inc, 409, new RegExp(`image ${raw.id} has no snapshot_guid`))
  await refused('origin missing', next.id, missing, inc, 404, new RegExp(`origin image ${missing} not found`))
  await refused('origin incomplete', next.id, queued.id, inc, 409, new RegExp(`origin image ${queued.id} is not complete`))
  await refused('origin without snapshot_guid', next.id, raw.id, inc, 409, new RegExp(`origin image ${raw.id} has no snapshot_guid`))
  await refused('origin is the image', next.id, next.id, inc, 400, /cannot be its own origin/)
  await refused('not a zfs stream', next.id, base.id, randomBytes(2000), 400, /not a zfs send stream/)
  await refused('cut inside the first record', next.id, base.id, inc.subarray(0, 100), 400, /ends inside the zfs stream's first record/)
  await refused('compound', next.id, base.id, zfsStream({ fromguid: GUID_A, toguid: GUID_B, hdrtype: 2n }), 400, /replication or properties stream/)
  await refused('clone', next.id, base.id, zfsStream({ fromguid: GUID_A, toguid: GUID_B, flags: 1 }), 400, /clone stream/)
  await refused('full, not incremental', next.id, base.id, zfsStream({ toguid: GUID_B }), 400, /full stream \(from guid 0\)/)
  await refused('wrong base', next.id, base.id, zfsStream({ fromguid: GUID_C, toguid: GUID_B }), 400,
    new RegExp(`starts from snapshot guid ${GUID_C}, expected origin ${base.id}'s snapshot guid ${GUID_A}`))
  await refused('wrong target', next.id, base.id, zfsStream({ fromguid: GUID_A, toguid: GUID_C }), 400,
    new RegExp(`ends at snapshot guid ${GUID_C}, expected image ${next.id}'s snapshot guid ${GUID_B}`))
  await refused('too large (announced)', next.id, base.id, zfsStream({ fromguid: GUID_A, toguid: GUID_B }, 30_000), 413, /maximum size of 20000 bytes/)
  const big = await chunkedPut(`${s.native}/images/${next.id}/increment`, { 'x-image-origin': base.id }, zfsStream({ fromguid: GUID_A, toguid: GUID_B }, 30_000), 4096)
  t.equal(big.status, 413, 'too large (chunked, found while storing)')
  t.same(await snapshot(s, base.id, next.id, raw.id, queued.id), before, 'too large (chunked): nothing changed')

  t.equal((await putIncrement(s.native, next.id, base.id, inc)).status, 200, 'after all that, the right stream is taken')
  const linked = await snapshot(s, base.id, next.id, raw.id, queued.id)
  const again = await putIncrement(s.native, next.id, base.id, inc)
  t.equal(again.status, 409, 'a second increment')
  t.match(again.body.message, new RegExp(`image ${next.id} already has an increment \\(from ${base.id}\\)`))
  t.same(await snapshot(s, base.id, next.id, raw.id, queued.id), linked, 'the second one left nothing behind')
})

t.test('a cycle of origins is refused', async (t) => {
  const s = await startTestService(t)
  const a = (await nativeUpload(s.native, zfsStream({ toguid: GUID_A }))).body
  const b = (await nativeUpload(s.native, zfsStream({ toguid: GUID_B }))).body
  const c = (await nativeUpload(s.native, zfsStream({ toguid: GUID_C }))).body
  t.equal((await putIncrement(s.native, b.id, a.id, zfsStream({ fromguid: GUID_A, toguid: GUID_B }))).status, 200, 'b from a')
  t.equal((await putIncrement(s.native, c.id, b.id, zfsStream({ fromguid: GUID_B, toguid: GUID_C }))).status, 200, 'c from b')
  const before = await snapshot(s, a.id, b.id, c.id)
  const r = await putIncrement(s.native, a.id, c.id, zfsStream({ fromguid: GUID_C, toguid: GUID_A }))
  t.equal(r.status, 409)
  t.equal(r.body.message, `origin image ${c.id} descends from image ${a.id}: linking them would make a cycle`)
  t.same(await snapshot(s, a.id, b.id, c.id), before, 'nothing changed')
})

t.test('an origin cannot be deleted; the image with the increment can, blobs and all', async (t) => {
  const s = await startTestService(t)
  const { base, next, inc } = await pair(s)
  const third = (await nativeUpload(s.native, zfsStream({ toguid: GUID_C }), { 'x-image-name': 'debian' })).body
  t.equal((await putIncrement(s.native, next.id, base.id, inc)).status, 200)
  t.equal((await putIncrement(s.native, third.id, base.id, zfsStream({ fromguid: GUID_A, toguid: GUID_C }))).status, 200)
  const dependents = [next.id, third.id].sort()
  const message = `image ${base.id} is the origin of ${dependents.join(', ')}`

  const native = await getJson(`${s.native}/images/${base.id}`, { method: 'DELETE' })
  t.equal(native.status, 409)
  t.same(native.body, { message }, 'native: every dependent, sorted')
  const glance = await getJson(`${s.glance}/v2/images/${base.id}`, { method: 'DELETE' })
  t.equal(glance.status, 409)
  t.match(glance.body, new RegExp(`^409 Conflict\\n\\n${message}\\n`), 'Glance: the same message, its own shape')
  t.equal((await getJson(`${s.native}/images/${base.id}`)).body.status, 'complete', 'the origin is still there')
  t.equal((await fetch(`${s.native}/images/${base.id}/download`)).status, 200)

  const incFile = `${next.id}.increment.${sha256(inc)}`
  t.ok(readdirSync(join(s.dataDir, 'images')).includes(incFile), 'the increment is a second blob of its image')
  t.equal((await getJson(`${s.native}/images/${next.id}`, { method: 'DELETE' })).status, 200)
  t.notOk(readdirSync(join(s.dataDir, 'images')).some((f) => f.startsWith(next.id)), 'deleting it removed both its blobs')
  t.equal((await getJson(`${s.glance}/v2/images/${third.id}`, { method: 'DELETE' })).status, 204, 'Glance deletes one too')
  t.notOk(readdirSync(join(s.dataDir, 'images')).some((f) => f.startsWith(third.id)), 'both blobs, through Glance as well')
  t.equal((await getJson(`${s.native}/images/${base.id}`, { method: 'DELETE' })).status, 200, 'with no dependents left, the origin goes')
  t.same(readdirSync(join(s.dataDir, 'images')), [], 'nothing left behind')
})

t.test('cluster mode: the increment redirects to its digest like the full download', async (t) => {
  const s = await startTestService(t, { downloadRedirect: true })
  const { base, next, inc } = await pair(s)
  t.equal((await putIncrement(s.native, next.id, base.id, inc)).status, 200)
  const r = await fetch(`${s.native}/images/${next.id}/increment`, { redirect: 'manual' })
  t.equal(r.status, 302)
  t.equal(r.headers.get('location'), `/blobs/sha256/${sha256(inc)}`)
  t.equal(r.headers.get('cache-control'), 'no-store')
  t.equal(r.headers.get('x-image-sha256'), sha256(inc))
  t.equal(r.headers.get('x-image-blake2b512'), createHash('blake2b512').update(inc).digest('hex'), 'the redirect names both digests')
  t.equal(r.headers.get('x-image-origin'), base.id)
  t.equal(r.headers.get('x-image-from-guid'), GUID_A.toString())
  t.equal(r.headers.get('x-image-snapshot-guid'), GUID_B.toString())
  const followed = await fetch(`${s.native}/images/${next.id}/increment`)
  t.equal(followed.status, 200)
  t.same(Buffer.from(await followed.arrayBuffer()), inc, 'following it gives the increment')
})

t.test('X-Image-Version: a publisher chooses the version', async (t) => {
  const s = await startTestService(t)
  const v5 = await nativeUpload(s.native, 'five', { 'x-image-name': 'deb', 'x-image-version': '5' })
  t.equal(v5.status, 200)
  t.equal(v5.body.version, 5)
  const dup = await nativeUpload(s.native, 'again', { 'x-image-name': 'deb', 'x-image-version': '5' })
  t.equal(dup.status, 409)
  t.match(dup.body.message, /already has \(or had\) version 5/)
  t.equal((await nativeUpload(s.native, 'older', { 'x-image-name': 'deb', 'x-image-version': '3' })).status, 409, 'below the counter: it may have been handed out')
  t.equal((await nativeUpload(s.native, 'next', { 'x-image-name': 'deb' })).body.version, 6, 'without the header, the next after the chosen one')
  t.equal((await nativeUpload(s.native, 'x', { 'x-image-name': 'other', 'x-image-version': '1' })).body.version, 1, 'per name')
  for (const bad of ['0', '-1', 'abc', '1.5', '1e3']) {
    const r = await nativeUpload(s.native, 'x', { 'x-image-name': 'deb', 'x-image-version': bad })
    t.equal(r.status, 400, `version ${bad}: 400`)
  }
  const noName = await nativeUpload(s.native, 'x', { 'x-image-version': '9' })
  t.equal(noName.status, 400)
  t.same(noName.body, { message: 'X-Image-Version needs an X-Image-Name' })
  const all = (await getJson(`${s.native}/images/by-name/deb`)).body
  t.same(all.map((r: any) => r.version), [5, 6], 'refused uploads made no records')
})
