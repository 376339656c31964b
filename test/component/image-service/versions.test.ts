// Named images: each upload under a name adds a version; /latest gives the
// newest complete one.
import t from 'tap'
import { abortedUpload, getJson, nativeUpload, startSourceServer, startTestService, waitFor, waitForNative } from '../../helpers/image-service.js'

t.test('versions and latest', async (t) => {
  const { native } = await startTestService(t)
  const unnamed = await nativeUpload(native, 'u')
  t.equal(unnamed.body.name, '')
  t.equal(unnamed.body.version, 0, 'unnamed images have version 0')

  const v1 = await nativeUpload(native, 'one', { 'x-image-name': 'ubuntu' })
  const v2 = await nativeUpload(native, 'two', { 'x-image-name': 'ubuntu', 'x-image-type': 'container' })
  t.equal(v1.body.version, 1)
  t.equal(v2.body.version, 2)
  t.equal(v2.body.name, 'ubuntu')
  const other = await nativeUpload(native, 'other', { 'x-image-name': 'debian' })
  t.equal(other.body.version, 1, 'versions count per name')

  const latest = await getJson(`${native}/images/by-name/ubuntu/latest`)
  t.equal(latest.status, 200)
  t.equal(latest.body.id, v2.body.id)
  const dl = await fetch(`${native}/images/by-name/ubuntu/latest/download`)
  t.equal(dl.status, 200)
  t.equal(dl.headers.get('x-image-version'), '2')
  t.equal(dl.headers.get('x-image-id'), v2.body.id)
  t.equal(await dl.text(), 'two')

  const all = await getJson(`${native}/images/by-name/ubuntu`)
  t.same(all.body.map((r: any) => r.version), [1, 2], 'all versions, oldest first')

  // A failed upload takes a version number but never becomes latest.
  await abortedUpload(`${native}/images`, 'PUT', { 'x-image-type': 'kvm', 'x-image-name': 'ubuntu', 'content-length': '1000' }, Buffer.from('x'))
  const failed = await waitFor('failed v3', async () => {
    const r = await getJson(`${native}/images/by-name/ubuntu`)
    const v3 = (r.body as any[]).find((x) => x.version === 3)
    return v3?.status === 'error' ? v3 : undefined
  })
  t.equal(failed.version, 3)
  t.equal((await getJson(`${native}/images/by-name/ubuntu/latest`)).body.id, v2.body.id, 'latest skips incomplete versions')

  await getJson(`${native}/images/${v2.body.id}`, { method: 'DELETE' })
  t.equal((await getJson(`${native}/images/by-name/ubuntu/latest`)).body.id, v1.body.id, 'deleting the newest falls back')
  const v4 = await nativeUpload(native, 'four', { 'x-image-name': 'ubuntu' })
  t.equal(v4.body.version, 4, 'version numbers are never reused')

  const none = await getJson(`${native}/images/by-name/nope/latest`)
  t.equal(none.status, 404)
  t.same(none.body, { message: 'no complete image with that name', code: 404, stack: [] })
  t.equal((await getJson(`${native}/images/by-name/nope/latest/download`)).status, 404)
  t.equal((await getJson(`${native}/images/by-name/nope`)).status, 404)
})

t.test('names with special characters are one encoded path segment', async (t) => {
  const { native } = await startTestService(t)
  const up = await nativeUpload(native, 'x', { 'x-image-name': 'team/ubuntu 22.04' })
  t.equal(up.body.version, 1)
  const latest = await getJson(`${native}/images/by-name/${encodeURIComponent('team/ubuntu 22.04')}/latest`)
  t.equal(latest.status, 200)
  t.equal(latest.body.id, up.body.id)
})

t.test('POST with a name adds a version too', async (t) => {
  const { native } = await startTestService(t)
  const src = await startSourceServer(t)
  await nativeUpload(native, 'first', { 'x-image-name': 'fetched' })
  const r = await getJson(`${native}/images`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ source: `${src.url}/data`, type: 'kvm', name: 'fetched' }),
  })
  t.equal(r.status, 202)
  t.equal(r.body.version, 2)
  t.equal(r.body.name, 'fetched')
  await waitForNative(native, r.body.id, ['complete'])
  t.equal((await getJson(`${native}/images/by-name/fetched/latest`)).body.id, r.body.id)
})
