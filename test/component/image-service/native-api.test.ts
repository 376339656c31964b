// The original mistify-image-service APITestSuite (wire spec §6.2), ported,
// plus the wire details of §5 (key order, zero times, error shapes).
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ZERO_TIME } from '../../../src/image-service/store/store.js'
import {
  TESTDATA, UUID_RE, getJson, nativeUpload, startSourceServer, startTestService, waitForNative,
} from '../../helpers/image-service.js'

// The original's metadata.Image, then our additions (issue 16: the lineage of zfs increments).
const NATIVE_KEYS = ['id', 'source', 'type', 'comment', 'status', 'size', 'expected_size', 'download_start', 'download_end', 'sha256', 'name', 'version', 'snapshot_guid', 'origin', 'increment', 'blake2b512']

t.test('ReceiveImage (PUT /images)', async (t) => {
  const { native } = await startTestService(t)
  for (const type of ['', 'asdf']) {
    const r = await nativeUpload(native, TESTDATA, { 'x-image-type': type })
    t.equal(r.status, 400, `type ${JSON.stringify(type)} → 400`)
    t.same(r.body, { message: 'invalid X-Image-Type header' })
  }
  const noHeader = await getJson(`${native}/images`, { method: 'PUT', body: TESTDATA })
  t.equal(noHeader.status, 400, 'no X-Image-Type → 400')
  for (const type of ['kvm', 'container']) {
    const r = await nativeUpload(native, TESTDATA, { 'x-image-type': type, 'x-image-comment': `a ${type}` })
    t.equal(r.status, 200, `${type} → 200`)
    t.match(r.body.id, UUID_RE, 'server-made UUID')
    t.equal(r.body.status, 'complete')
    t.equal(r.body.size, 24)
    t.equal(r.body.expected_size, 24, 'expected_size = request Content-Length')
    t.equal(r.body.type, type)
    t.equal(r.body.comment, `a ${type}`)
    t.same(Object.keys(r.body), NATIVE_KEYS, 'metadata.Image keys in order, no error key')
    t.equal(r.body.blake2b512, createHash('blake2b512').update(TESTDATA).digest('hex'), 'the BLAKE2b-512 published with the bytes')
    t.not(r.body.download_start, ZERO_TIME)
    t.not(r.body.download_end, ZERO_TIME)
  }
  // The list is [] (never null) when empty: checked on a fresh service.
  const fresh = await startTestService(t)
  const empty = await getJson(`${fresh.native}/images`)
  t.equal(empty.status, 200)
  t.same(empty.body, [])
  t.match(empty.headers.get('content-type'), /^application\/json/)
})

t.test('FetchImage (POST /images)', async (t) => {
  const { native } = await startTestService(t)
  const src = await startSourceServer(t)
  const post = async (body: string): Promise<{ status: number; body: any }> => {
    const r = await getJson(`${native}/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    return { status: r.status, body: r.body }
  }

  const notJson = await post('asdf')
  t.equal(notJson.status, 400, 'body asdf → 400')
  t.type(notJson.body.message, 'string')
  t.same(await post('{}'), { status: 400, body: { message: 'missing image source' } }, '{} → missing image source')
  t.same(await post(JSON.stringify({ source: `${src.url}/data` })), { status: 400, body: { message: 'invalid image type' } }, 'no type')
  t.same(await post(JSON.stringify({ source: `${src.url}/data`, type: 'asdf' })), { status: 400, body: { message: 'invalid image type' } }, 'type asdf')

  const kvm = await post(JSON.stringify({ source: `${src.url}/data`, type: 'kvm', comment: 'c', id: 'client-id-ignored' }))
  t.equal(kvm.status, 202, 'kvm → 202')
  t.equal(kvm.body.status, 'pending', 'reply shows the record as saved: pending')
  t.match(kvm.body.id, UUID_RE, 'client id replaced')
  t.equal(kvm.body.download_start, ZERO_TIME, 'zero time until the download starts')
  t.same(Object.keys(kvm.body), NATIVE_KEYS)
  const done = await waitForNative(native, kvm.body.id, ['complete', 'error'])
  t.equal(done.status, 'complete')
  t.equal(done.size, 24)
  t.equal(done.expected_size, 24)
  t.equal(done.source, `${src.url}/data`)
  t.equal(done.comment, 'c')

  const container = await post(JSON.stringify({ source: `${src.url}/data?`, type: 'container' }))
  t.equal(container.status, 202, 'container with URL + ? → 202')
  t.not(container.body.id, kvm.body.id, 'a different source string is a different image')
  const cdone = await waitForNative(native, container.body.id, ['complete', 'error'])
  t.equal(cdone.status, 'complete')
  t.equal(cdone.type, 'container')
})

t.test('ListImages (GET /images?type=)', async (t) => {
  const { native } = await startTestService(t)
  await nativeUpload(native, TESTDATA, { 'x-image-type': 'kvm' })
  await nativeUpload(native, TESTDATA, { 'x-image-type': 'container' })
  const list = async (q: string): Promise<{ status: number; body: any }> => {
    const r = await getJson(`${native}/images${q}`)
    return { status: r.status, body: r.body }
  }
  t.equal((await list('?type=')).body.length, 2, '?type= lists all')
  t.equal((await list('')).body.length, 2, 'no query lists all')
  const kvm = await list('?type=kvm')
  t.equal(kvm.body.length, 1)
  t.equal(kvm.body[0].type, 'kvm')
  const ct = await list('?type=container')
  t.equal(ct.body.length, 1)
  t.equal(ct.body[0].type, 'container')
  t.same(await list('?type=asdf'), { status: 400, body: { message: 'invalid type' } }, 'letters-only unknown → 400')
  t.equal((await list('?type=kvm1')).body.length, 2, 'not letters-only: falls through to the full list')
})

t.test('GetImage (GET /images/{id})', async (t) => {
  const { native } = await startTestService(t)
  const up = await nativeUpload(native, TESTDATA)
  const missing = await getJson(`${native}/images/asdf`)
  t.equal(missing.status, 404, 'asdf → 404')
  t.same(missing.body, { message: 'image not found', code: 404, stack: [] }, 'HTTPError shape')
  const unknown = await getJson(`${native}/images/00000000-0000-4000-8000-000000000000`)
  t.equal(unknown.status, 404, 'unknown UUID → 404')
  const got = await getJson(`${native}/images/${up.body.id}`)
  t.equal(got.status, 200)
  t.equal(got.body.id, up.body.id)
  t.same(got.body, up.body, 'same record as the upload returned')
})

t.test('DeleteImage (DELETE /images/{id})', async (t) => {
  const { native, dataDir } = await startTestService(t)
  const up = await nativeUpload(native, TESTDATA)
  const file = join(dataDir, 'images', up.body.id)
  t.ok(existsSync(file), 'data stored at images/<id>')
  const del = await getJson(`${native}/images/${up.body.id}`, { method: 'DELETE' })
  t.equal(del.status, 200)
  t.same(del.body, up.body, 'answers with the deleted record')
  t.notOk(existsSync(file), 'file removed')
  t.ok(existsSync(join(dataDir, 'images')), 'base directory survives')
  t.equal((await getJson(`${native}/images/${up.body.id}`)).status, 404, 'gone')
  t.equal((await getJson(`${native}/images/${up.body.id}`, { method: 'DELETE' })).status, 404, 'deleting twice → 404')
  const bad = await getJson(`${native}/images/asdf`, { method: 'DELETE' })
  t.equal(bad.status, 404, 'asdf → 404')
  t.same(bad.body, { message: 'image not found', code: 404, stack: [] })
})

t.test('DownloadImage (GET /images/{id}/download)', async (t) => {
  const { native, glance } = await startTestService(t)
  const up = await nativeUpload(native, TESTDATA)
  const res = await fetch(`${native}/images/${up.body.id}/download`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'application/octet-stream')
  t.equal(res.headers.get('content-length'), '24')
  t.equal(await res.text(), TESTDATA, 'exact bytes')
  const bad = await getJson(`${native}/images/asdf/download`)
  t.equal(bad.status, 404, 'asdf → 404')
  t.same(bad.body, { message: 'image not found', code: 404, stack: [] })

  // An image without data yet (a Glance-created record) is `pending` here.
  const created = await getJson(`${glance}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"disk_format":"raw","container_format":"bare"}' })
  const incomplete = await getJson(`${native}/images/${created.body.id}/download`)
  t.equal(incomplete.status, 404)
  t.same(incomplete.body, { message: 'incomplete image', code: 404, stack: [] })
})

t.test('routing: trailing slash, unknown routes, methods', async (t) => {
  const { native } = await startTestService(t)
  const slash = await fetch(`${native}/images/?type=kvm`, { redirect: 'manual' })
  t.equal(slash.status, 301, 'trailing slash redirects (StrictSlash)')
  t.equal(slash.headers.get('location'), '/images?type=kvm')
  const nope = await getJson(`${native}/nope`)
  t.equal(nope.status, 404)
  t.same(nope.body, { message: 'not found', code: 404, stack: [] })
  const patch = await getJson(`${native}/images`, { method: 'PATCH' })
  t.equal(patch.status, 405)
  t.match(patch.headers.get('allow'), /GET/)
})
