// The OpenStack Image API v2 subset, over HTTP.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { abortedUpload, delay, getJson, startTestService, UUID_RE, waitFor } from '../../helpers/image-service.js'

const JSON_HDR = { 'content-type': 'application/json', 'x-auth-token': 'anything' }
const PATCH_HDR = { 'content-type': 'application/openstack-images-v2.1-json-patch', 'x-auth-token': 'anything' }
const hex = (alg: string, b: Buffer): string => createHash(alg).update(b).digest('hex')

async function create(glance: string, body: Record<string, unknown> = {}): Promise<any> {
  const r = await getJson(`${glance}/v2/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ disk_format: 'raw', container_format: 'bare', ...body }) })
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

async function upload(glance: string, id: string, data: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const r = await getJson(`${glance}/v2/images/${id}/file`, {
    method: 'PUT', headers: { 'content-type': 'application/octet-stream', ...headers }, body: data as NonNullable<RequestInit['body']>,
  })
  return { status: r.status, body: r.body }
}

async function patch(glance: string, id: string, ops: unknown[], headers: Record<string, string> = PATCH_HDR): Promise<{ status: number; body: any }> {
  const r = await getJson(`${glance}/v2/images/${id}`, { method: 'PATCH', headers, body: JSON.stringify(ops) })
  return { status: r.status, body: r.body }
}

t.test('versions, schemas, request ids, errors', async (t) => {
  const { glance } = await startTestService(t)
  const v = await getJson(`${glance}/versions`)
  t.equal(v.status, 200)
  t.equal(v.body.versions[0].status, 'CURRENT')
  t.match(v.body.versions[0].id, /^v2\./)
  t.match(v.body.versions[0].links[0].href, /\/v2\/$/)
  const root = await getJson(`${glance}/`)
  t.equal(root.status, 300, 'GET / is Multiple Choices as in Glance')
  t.same(root.body, v.body)
  t.match(v.headers.get('x-openstack-request-id'), /^req-[0-9a-f-]{36}$/)
  const schema = await getJson(`${glance}/v2/schemas/image`)
  t.equal(schema.body.name, 'image')
  t.same(schema.body.additionalProperties, { type: 'string' })
  t.equal((await getJson(`${glance}/v2/schemas/images`)).body.name, 'images')
  const nf = await getJson(`${glance}/v2/images/00000000-0000-4000-8000-000000000000`)
  t.equal(nf.status, 404)
  t.match(nf.body, /^404 Not Found\n\nNo image found/)
  t.equal((await getJson(`${glance}/v2/nothing`)).status, 404)
  t.equal((await getJson(`${glance}/v2/images`, { method: 'DELETE' })).status, 405)
})

t.test('create → upload → get → download → delete', async (t) => {
  const { glance } = await startTestService(t)
  const img = await create(glance, { name: 'cirros', tags: ['a', 'b', 'a'], min_disk: 1, min_ram: 64, os_distro: 'cirros', visibility: 'private' })
  t.match(img.id, UUID_RE)
  t.match(img, {
    name: 'cirros', status: 'queued', visibility: 'private', protected: false, checksum: null, os_hash_algo: null,
    os_hash_value: null, size: null, virtual_size: null, disk_format: 'raw', container_format: 'bare', min_disk: 1,
    min_ram: 64, tags: ['a', 'b'], owner: null, os_distro: 'cirros', self: `/v2/images/${img.id}`,
    file: `/v2/images/${img.id}/file`, schema: '/v2/schemas/image',
  })
  t.match(img.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'Glance timestamp format')

  const noData = await fetch(`${glance}/v2/images/${img.id}/file`)
  t.equal(noData.status, 204, 'no data yet → 204')

  const data = randomBytes(200_000)
  const up = await upload(glance, img.id, data)
  t.equal(up.status, 204)
  const got = await getJson(`${glance}/v2/images/${img.id}`, { headers: { 'x-auth-token': 'x' } })
  t.equal(got.body.status, 'active')
  t.equal(got.body.size, data.length)
  t.equal(got.body.checksum, hex('md5', data), 'checksum is md5, as Glance')
  t.equal(got.body.os_hash_algo, 'sha512')
  t.equal(got.body.os_hash_value, hex('sha512', data))

  t.equal((await upload(glance, img.id, data)).status, 409, 'a second upload → 409')

  const dl = await fetch(`${glance}/v2/images/${img.id}/file`)
  t.equal(dl.status, 200)
  t.equal(dl.headers.get('content-type'), 'application/octet-stream')
  t.equal(dl.headers.get('content-md5'), hex('md5', data))
  t.ok(Buffer.from(await dl.arrayBuffer()).equals(data))
  const part = await fetch(`${glance}/v2/images/${img.id}/file`, { headers: { range: 'bytes=100-199' } })
  t.equal(part.status, 206)
  t.ok(Buffer.from(await part.arrayBuffer()).equals(data.subarray(100, 200)))
  const bad = await fetch(`${glance}/v2/images/${img.id}/file`, { headers: { range: 'bytes=999999-' } })
  t.equal(bad.status, 416)
  await bad.text()

  const del = await fetch(`${glance}/v2/images/${img.id}`, { method: 'DELETE' })
  t.equal(del.status, 204)
  t.equal((await getJson(`${glance}/v2/images/${img.id}`)).status, 404)
  t.equal((await fetch(`${glance}/v2/images/${img.id}`, { method: 'DELETE' })).status, 404)
})

t.test('create validation', async (t) => {
  const { glance } = await startTestService(t)
  const post = async (body: unknown): Promise<number> =>
    (await getJson(`${glance}/v2/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify(body) })).status
  t.equal(await post({ status: 'active' }), 403, 'read-only attribute → 403')
  t.equal(await post({ checksum: 'x' }), 403)
  t.equal(await post({ mistify_type: 'kvm' }), 403)
  t.equal(await post({ os_glance_foo: 'x' }), 403, 'reserved prefix')
  t.equal(await post({ disk_format: 'floppy' }), 400)
  t.equal(await post({ container_format: 'zip' }), 400)
  t.equal(await post({ visibility: 'everyone' }), 400)
  t.equal(await post({ min_disk: -1 }), 400)
  t.equal(await post({ min_ram: 1.5 }), 400)
  t.equal(await post({ tags: 'x' }), 400)
  t.equal(await post({ protected: 'yes' }), 400)
  t.equal(await post({ custom: 5 }), 400, 'custom properties must be strings')
  t.equal(await post({ name: 'x'.repeat(256) }), 400)
  t.equal(await post([]), 400)
  t.equal(await post({ id: 'not-a-uuid' }), 400)
  const id = '8e1b9a3c-6f0e-4b53-9d4a-2c1e5f7a9b01'
  t.equal(await post({ id }), 201, 'a client-chosen UUID is accepted')
  t.equal((await getJson(`${glance}/v2/images/${id}`)).body.id, id)
  t.equal(await post({ id }), 409, 'duplicate id → 409')
  const minimal = await getJson(`${glance}/v2/images`, { method: 'POST', headers: JSON_HDR, body: '{}' })
  t.equal(minimal.status, 201)
  t.match(minimal.body, { name: null, disk_format: null, container_format: null, visibility: 'shared' })
  t.equal(minimal.headers.get('location'), `/v2/images/${minimal.body.id}`)
  const noFormats = await upload(glance, minimal.body.id, Buffer.from('x'))
  t.equal(noFormats.status, 400, 'formats must be set before data')
  t.match(noFormats.body, /disk_format, container_format must be set/)
  t.equal((await getJson(`${glance}/v2/images/${minimal.body.id}`)).body.status, 'queued', 'still queued')
  const wrongType = await upload(glance, id, Buffer.from('x'), { 'content-type': 'text/plain' })
  t.equal(wrongType.status, 415)
})

t.test('list: paging with limit/marker/next, filters, sorting', async (t) => {
  const { glance } = await startTestService(t)
  const ids: string[] = []
  for (let i = 0; i < 5; i++) {
    const img = await create(glance, { name: `img${i}`, tags: i % 2 === 0 ? ['even'] : ['odd'], ...(i === 4 ? { flavor: 'big' } : {}) })
    ids.push(img.id)
    await delay(5)
  }
  await upload(glance, ids[0] as string, Buffer.from('zero'))
  await upload(glance, ids[1] as string, Buffer.from('one!'))

  const first = await getJson(`${glance}/v2/images?limit=2`)
  t.equal(first.status, 200)
  t.equal(first.body.images.length, 2)
  t.equal(first.body.schema, '/v2/schemas/images')
  t.equal(first.body.first, '/v2/images?limit=2')
  t.match(first.body.next, /^\/v2\/images\?limit=2&marker=/)
  const seen: string[] = first.body.images.map((i: any) => i.id)
  let next: string | undefined = first.body.next
  let pages = 1
  while (next) {
    const page = await getJson(`${glance}${next}`)
    t.equal(page.status, 200)
    seen.push(...page.body.images.map((i: any) => i.id))
    next = page.body.next
    pages++
  }
  t.equal(pages, 3, '5 images at 2 per page = 3 pages')
  t.same([...seen].sort(), [...ids].sort(), 'every image exactly once')
  t.same(seen, [...ids].reverse(), 'default order: newest first')

  const byName = await getJson(`${glance}/v2/images?sort_key=name&sort_dir=asc&limit=3`)
  t.same(byName.body.images.map((i: any) => i.name), ['img0', 'img1', 'img2'])
  const page2 = await getJson(`${glance}${byName.body.next}`)
  t.same(page2.body.images.map((i: any) => i.name), ['img3', 'img4'], 'marker paging keeps the sort')
  t.notOk('next' in page2.body, 'no next link after the last page')
  const sortParam = await getJson(`${glance}/v2/images?sort=name:desc`)
  t.same(sortParam.body.images.map((i: any) => i.name), ['img4', 'img3', 'img2', 'img1', 'img0'])

  const names = async (q: string): Promise<string[]> => ((await getJson(`${glance}/v2/images?${q}`)).body.images as any[]).map((i) => i.name).sort()
  t.same(await names('name=img3'), ['img3'], 'name filter')
  t.same(await names('status=active'), ['img0', 'img1'], 'status filter')
  t.same(await names('status=queued'), ['img2', 'img3', 'img4'])
  t.same(await names('tag=odd'), ['img1', 'img3'], 'tag filter')
  t.same(await names('flavor=big'), ['img4'], 'custom property filter')
  t.same(await names('size_min=4&size_max=4'), ['img0', 'img1'])
  t.same(await names('visibility=shared'), ['img0', 'img1', 'img2', 'img3', 'img4'])
  t.same(await names('visibility=public'), [])
  t.same(await names(`checksum=${hex('md5', Buffer.from('zero'))}`), ['img0'])

  t.equal((await getJson(`${glance}/v2/images?status=bogus`)).status, 400, 'invalid status → 400')
  t.equal((await getJson(`${glance}/v2/images?limit=abc`)).status, 400)
  t.equal((await getJson(`${glance}/v2/images?marker=00000000-0000-4000-8000-000000000000`)).status, 400, 'unknown marker → 400')
  t.equal((await getJson(`${glance}/v2/images?sort_key=bogus`)).status, 400)
  t.equal((await getJson(`${glance}/v2/images?sort_dir=up`)).status, 400)
  t.equal((await getJson(`${glance}/v2/images?limit=0`)).body.images.length, 0)
})

t.test('PATCH (json-patch) and tags', async (t) => {
  const { glance } = await startTestService(t)
  const img = await create(glance, { name: 'p', custom: 'c' })
  const r = await patch(glance, img.id, [
    { op: 'replace', path: '/name', value: 'renamed' },
    { op: 'add', path: '/tags', value: ['x', 'y'] },
    { op: 'replace', path: '/min_disk', value: 5 },
    { op: 'add', path: '/min_ram', value: 512 },
    { op: 'add', path: '/os_distro', value: 'debian' },
    { op: 'replace', path: '/custom', value: 'c2' },
    { op: 'add', path: '/protected', value: true },
  ])
  t.equal(r.status, 200)
  t.match(r.body, { name: 'renamed', tags: ['x', 'y'], min_disk: 5, min_ram: 512, os_distro: 'debian', custom: 'c2', protected: true })
  const r2 = await patch(glance, img.id, [{ op: 'remove', path: '/custom' }, { op: 'remove', path: '/tags' }, { op: 'remove', path: '/min_disk' }])
  t.equal(r2.status, 200)
  t.notOk('custom' in r2.body, 'custom property removed')
  t.same(r2.body.tags, [])
  t.equal(r2.body.min_disk, 0)
  t.equal((await getJson(`${glance}/v2/images/${img.id}`)).body.os_distro, 'debian', 'persisted')

  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/missing', value: 'x' }])).status, 409, 'replace a missing property → 409')
  t.equal((await patch(glance, img.id, [{ op: 'remove', path: '/missing' }])).status, 409, 'remove a missing property → 409')
  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/status', value: 'active' }])).status, 403, 'read-only → 403')
  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/checksum', value: 'x' }])).status, 403)
  t.equal((await patch(glance, img.id, [{ op: 'move', path: '/name', from: '/x' }])).status, 400, 'unsupported op → 400')
  t.equal((await patch(glance, img.id, [{ op: 'add', path: '/a/b', value: 'x' }])).status, 400, 'nested path → 400')
  t.equal((await patch(glance, img.id, [{ op: 'add', path: '/min_ram', value: 'lots' }])).status, 400)
  t.equal((await patch(glance, img.id, { op: 'add' } as unknown as unknown[])).status, 400, 'body must be an array')
  t.equal((await patch(glance, img.id, [], { 'content-type': 'application/json' })).status, 415, 'plain JSON content type → 415')
  t.equal((await patch(glance, '00000000-0000-4000-8000-000000000000', [])).status, 404)
  // A failed op leaves the image unchanged.
  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/name', value: 'half' }, { op: 'remove', path: '/missing' }])).status, 409)
  t.equal((await getJson(`${glance}/v2/images/${img.id}`)).body.name, 'renamed', 'patch is all or nothing')

  t.equal((await fetch(`${glance}/v2/images/${img.id}`, { method: 'DELETE' })).status, 403, 'protected → cannot delete')
  await patch(glance, img.id, [{ op: 'replace', path: '/protected', value: false }])

  t.equal((await fetch(`${glance}/v2/images/${img.id}/tags/blue`, { method: 'PUT' })).status, 204)
  t.equal((await fetch(`${glance}/v2/images/${img.id}/tags/blue`, { method: 'PUT' })).status, 204, 'adding twice is fine')
  t.same((await getJson(`${glance}/v2/images/${img.id}`)).body.tags, ['blue'])
  t.equal((await fetch(`${glance}/v2/images/${img.id}/tags/blue`, { method: 'DELETE' })).status, 204)
  t.equal((await fetch(`${glance}/v2/images/${img.id}/tags/blue`, { method: 'DELETE' })).status, 404)

  // Formats can change only while queued.
  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/disk_format', value: 'qcow2' }])).status, 200)
  await upload(glance, img.id, Buffer.from('data'))
  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/disk_format', value: 'raw' }])).status, 403)
  t.equal((await patch(glance, img.id, [{ op: 'replace', path: '/name', value: 'after' }])).status, 200, 'other fields stay editable')
  t.equal((await fetch(`${glance}/v2/images/${img.id}`, { method: 'DELETE' })).status, 204)
})

t.test('killed on failed upload', async (t) => {
  const { glance } = await startTestService(t, { maxUploadSize: 10_000 })
  const status = async (id: string): Promise<any> => (await getJson(`${glance}/v2/images/${id}`)).body

  const aborted = await create(glance)
  await abortedUpload(`${glance}/v2/images/${aborted.id}/file`, 'PUT', { 'content-type': 'application/octet-stream', 'content-length': '5000' }, Buffer.alloc(100))
  const k = await waitFor('killed', async () => {
    const s = await status(aborted.id)
    return s.status === 'killed' ? s : undefined
  })
  t.equal(k.status, 'killed', 'client abort → killed')
  t.equal(k.size, null)
  t.equal(k.checksum, null)
  t.type(k.mistify_error, 'string', 'the reason is visible')
  t.equal((await fetch(`${glance}/v2/images/${aborted.id}/file`)).status, 204, 'no data to download')
  t.equal((await upload(glance, aborted.id, Buffer.from('x'))).status, 409, 'a killed image takes no more data')

  const mismatch = await create(glance)
  const m = await upload(glance, mismatch.id, Buffer.from('12345'), { 'x-openstack-image-size': '6' })
  t.equal(m.status, 400, 'x-openstack-image-size mismatch → 400')
  t.equal((await status(mismatch.id)).status, 'killed')

  const big = await create(glance)
  const b = await upload(glance, big.id, Buffer.alloc(20_000))
  t.equal(b.status, 413)
  t.match(b.body, /^413 Request Entity Too Large/)
  // Rejected from its Content-Length before anything was stored: still queued.
  t.equal((await status(big.id)).status, 'queued')
})
