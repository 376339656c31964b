// One set of images, two APIs: what one API does, the other sees.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { getJson, nativeUpload, startSourceServer, startTestService, waitForNative } from '../../helpers/image-service.js'

const JSON_HDR = { 'content-type': 'application/json' }
const hex = (alg: string, b: Buffer): string => createHash(alg).update(b).digest('hex')

t.test('native upload is an active Glance image', async (t) => {
  const { native, glance } = await startTestService(t)
  const data = randomBytes(50_000)
  const kvm = await nativeUpload(native, data, { 'x-image-name': 'vm', 'x-image-comment': 'hello' })
  const g = await getJson(`${glance}/v2/images/${kvm.body.id}`)
  t.equal(g.status, 200)
  t.match(g.body, {
    id: kvm.body.id, name: 'vm', status: 'active', size: data.length, checksum: hex('md5', data),
    os_hash_algo: 'sha512', os_hash_value: hex('sha512', data), disk_format: 'raw', container_format: 'bare',
    mistify_type: 'kvm', mistify_version: '1', mistify_comment: 'hello',
  })
  const dl = await fetch(`${glance}/v2/images/${kvm.body.id}/file`)
  t.ok(Buffer.from(await dl.arrayBuffer()).equals(data), 'same bytes through Glance')

  const ct = await nativeUpload(native, 'c', { 'x-image-type': 'container' })
  const gc = await getJson(`${glance}/v2/images/${ct.body.id}`)
  t.equal(gc.body.container_format, 'docker', 'container ⇔ container_format docker')
  t.equal(gc.body.name, null, 'unnamed → null')
  const list = await getJson(`${glance}/v2/images`)
  t.equal(list.body.images.length, 2, 'both listed by Glance')
})

t.test('Glance upload is a complete native image', async (t) => {
  const { native, glance } = await startTestService(t)
  const data = randomBytes(10_000)
  const created = await getJson(`${glance}/v2/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ name: 'app', disk_format: 'raw', container_format: 'docker' }) })
  const id: string = created.body.id
  const queued = await getJson(`${native}/images/${id}`)
  t.equal(queued.body.status, 'pending', 'queued ⇔ pending')
  t.equal(queued.body.type, 'container')
  t.equal(queued.body.name, 'app')
  t.equal(queued.body.version, 1)
  t.equal((await getJson(`${native}/images/${id}/download`)).body.message, 'incomplete image')

  await fetch(`${glance}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data })
  const n = await getJson(`${native}/images/${id}`)
  t.equal(n.body.status, 'complete', 'active ⇔ complete')
  t.equal(n.body.size, data.length)
  t.equal(n.body.sha256, hex('sha256', data))
  const dl = await fetch(`${native}/images/${id}/download`)
  t.ok(Buffer.from(await dl.arrayBuffer()).equals(data))
  t.equal((await getJson(`${native}/images?type=container`)).body.length, 1, 'listed as a container image')
  t.equal((await getJson(`${native}/images/by-name/app/latest`)).body.id, id, 'versions span both APIs')

  // Renaming through Glance makes it version 1 of the new name.
  await getJson(`${glance}/v2/images/${id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
    body: JSON.stringify([{ op: 'replace', path: '/name', value: 'app2' }]),
  })
  const renamed = await getJson(`${native}/images/${id}`)
  t.equal(renamed.body.name, 'app2')
  t.equal(renamed.body.version, 1)

  // Changing container_format while queued changes the native type.
  const other = await getJson(`${glance}/v2/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ container_format: 'docker' }) })
  await getJson(`${glance}/v2/images/${other.body.id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
    body: JSON.stringify([{ op: 'replace', path: '/container_format', value: 'bare' }]),
  })
  t.equal((await getJson(`${native}/images/${other.body.id}`)).body.type, 'kvm')
})

t.test('killed ⇔ error, importing for URL fetches, deletes and protection', async (t) => {
  const { native, glance } = await startTestService(t, { fetchTimeoutMs: 10_000 })
  const src = await startSourceServer(t)
  src.stalling.add('/slow')
  const f = await getJson(`${native}/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ source: `${src.url}/slow`, type: 'kvm' }) })
  await waitForNative(native, f.body.id, ['downloading'])
  const g = await getJson(`${glance}/v2/images/${f.body.id}`)
  t.equal(g.body.status, 'importing', 'a running URL fetch shows as importing')
  t.equal(g.body.mistify_source, `${src.url}/slow`)
  const put = await fetch(`${glance}/v2/images/${f.body.id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: 'x' })
  t.equal(put.status, 409, 'no Glance upload into a fetch')
  t.equal((await fetch(`${glance}/v2/images/${f.body.id}`, { method: 'DELETE' })).status, 204, 'Glance delete cancels the fetch')
  t.equal((await getJson(`${native}/images/${f.body.id}`)).status, 404, 'gone from the native API')

  const bad = await getJson(`${native}/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ source: `${src.url}/404`, type: 'kvm' }) })
  await waitForNative(native, bad.body.id, ['error'])
  const killed = await getJson(`${glance}/v2/images/${bad.body.id}`)
  t.equal(killed.body.status, 'killed', 'error ⇔ killed')
  t.equal(killed.body.mistify_error, 'source answered HTTP 404')

  const up = await nativeUpload(native, 'x')
  await getJson(`${glance}/v2/images/${up.body.id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
    body: JSON.stringify([{ op: 'replace', path: '/protected', value: true }]),
  })
  const refused = await getJson(`${native}/images/${up.body.id}`, { method: 'DELETE' })
  t.equal(refused.status, 403, 'Glance protection also guards the native DELETE')
  t.same(refused.body, { message: 'image is protected' })
  await getJson(`${glance}/v2/images/${up.body.id}`, {
    method: 'PATCH', headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
    body: JSON.stringify([{ op: 'replace', path: '/protected', value: false }]),
  })
  t.equal((await getJson(`${native}/images/${up.body.id}`, { method: 'DELETE' })).status, 200)
  t.equal((await getJson(`${glance}/v2/images/${up.body.id}`)).status, 404, 'native delete → gone from Glance')
})
