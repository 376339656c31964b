/**
 * Issue 12 for the image service, over real HTTP:
 *   item 7: fetch-from-URL is not an open proxy: loopback, link-local and
 *           private hosts are refused unless allowlisted, on every hop, and
 *           an operator can turn URL fetches off;
 *   item 15: an upload that outlived its image (deleted and created again
 *           under the same id) cannot overwrite the new image's bytes or record.
 */
import t from 'tap'
import { createHash, randomUUID } from 'node:crypto'
import { createServer, request, type IncomingMessage } from 'node:http'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { parseConfig } from '../../../src/image-service/config.js'
import { getJson, nativeUpload, startSourceServer, startTestService, TESTDATA, waitFor, waitForNative } from '../../helpers/image-service.js'

const JSON_HDR = { 'content-type': 'application/json' }
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')

const postSource = (native: string, source: string) =>
  getJson(`${native}/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ source, type: 'kvm' }) })

t.test('item 7: POST /images refuses loopback and link-local literals at once: 400, no record, no request', async (t) => {
  const src = await startSourceServer(t)
  const { native, dataDir } = await startTestService(t, { allowSourceHosts: [] })
  const port = new URL(src.url).port
  for (const [source, why] of [
    [`${src.url}/data`, /127\.0\.0\.1 is a loopback address/],
    [`http://[::ffff:127.0.0.1]:${port}/data`, /loopback address \(as IPv6\)/],
    ['http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254 is a link-local address/],
    ['http://10.0.0.1/disk.img', /10\.0\.0\.1 is a private address/],
    ['http://[fd00::1]/disk.img', /unique local \(private\) address/],
  ] as const) {
    const r = await postSource(native, source)
    t.equal(r.status, 400, source)
    t.match(r.body.message, why, source)
    t.match(r.body.message, /allow it with --allow-source-hosts/)
  }
  t.same((await getJson(`${native}/images`)).body, [], 'no record')
  t.equal(src.hits.size, 0, 'the source server was never asked')
  t.same(readdirSync(join(dataDir, 'images')), [], 'nothing stored')
})

t.test('item 7: a name resolving to loopback ends in error with the reason, nothing fetched or stored', async (t) => {
  const src = await startSourceServer(t)
  const { native, dataDir } = await startTestService(t, { allowSourceHosts: [] })
  const r = await postSource(native, `http://localhost:${new URL(src.url).port}/data`)
  t.equal(r.status, 202, 'a name cannot be judged before it is resolved')
  const rec = await waitForNative(native, r.body.id, ['error', 'complete'])
  t.match(rec, { status: 'error', error: /source host localhost resolves to (127\.0\.0\.1|::1), which is a loopback address/ })
  t.equal(src.hits.size, 0, 'the source server was never asked')
  t.same(readdirSync(join(dataDir, 'images')), [], 'nothing stored')
  const dl = await fetch(`${native}/images/${r.body.id}/download`)
  t.equal(dl.status, 404, 'nothing served back')
  await dl.arrayBuffer()
})

t.test('item 7: a redirect from an allowed host to a loopback one is refused at the hop', async (t) => {
  let target = 0
  let redirects = 0
  const s = createServer((q, res) => {
    if (q.url === '/data') { target++; res.writeHead(200, { 'content-length': TESTDATA.length }).end(TESTDATA); return }
    redirects++
    res.writeHead(302, { location: `http://127.0.0.1:${(s.address() as AddressInfo).port}/data` }).end()
  })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  t.teardown(() => { s.closeAllConnections(); s.close() })
  const port = (s.address() as AddressInfo).port
  // Only the name is allowed; the redirect names the loopback address itself, which is not.
  const { native } = await startTestService(t, { allowSourceHosts: ['localhost'] })
  const r = await postSource(native, `http://localhost:${port}/hop`)
  t.equal(r.status, 202)
  const rec = await waitForNative(native, r.body.id, ['error', 'complete'])
  t.match(rec, { status: 'error', error: /source http:\/\/127\.0\.0\.1:\d+: 127\.0\.0\.1 is a loopback address/ })
  t.equal(redirects, 1, 'the allowed host was asked')
  t.equal(target, 0, 'the redirect target never was')
})

t.test('item 7: allowlisted, the same loopback source is fetched and stored', async (t) => {
  const src = await startSourceServer(t)
  const { native } = await startTestService(t, { allowSourceHosts: ['127.0.0.0/8'] })
  const r = await postSource(native, `${src.url}/data`)
  t.equal(r.status, 202)
  const rec = await waitForNative(native, r.body.id, ['error', 'complete'])
  t.match(rec, { status: 'complete', sha256: sha(TESTDATA) })
})

t.test('item 7: --url-sources off refuses POST /images; uploads still work', async (t) => {
  const src = await startSourceServer(t)
  const { native } = await startTestService(t, { urlSources: false })
  const r = await postSource(native, `${src.url}/data`)
  t.equal(r.status, 400)
  t.match(r.body.message, /fetching images from a URL is disabled on this service \(--url-sources off\)/)
  t.same((await getJson(`${native}/images`)).body, [], 'no record')
  t.equal(src.hits.size, 0)
  const up = await nativeUpload(native, 'uploaded bytes')
  t.equal(up.status, 200)
  t.equal(up.body.status, 'complete')
})

t.test('item 7: the config: --allow-source-hosts and --url-sources, flags and environment', async (t) => {
  t.match(parseConfig([], {}), { allowSourceHosts: [], urlSources: true }, 'default: nothing allowed, URL fetches on')
  t.match(parseConfig(['--allow-source-hosts', '127.0.0.1, 10.0.0.0/8 images.lan'], {}), { allowSourceHosts: ['127.0.0.1', '10.0.0.0/8', 'images.lan'] })
  t.match(parseConfig([], { MISTIFY_IMAGE_SERVICE_ALLOW_SOURCE_HOSTS: 'fd00::/8', MISTIFY_IMAGE_SERVICE_URL_SOURCES: 'off' }), { allowSourceHosts: ['fd00::/8'], urlSources: false })
  t.match(parseConfig(['--url-sources', 'on'], { MISTIFY_IMAGE_SERVICE_URL_SOURCES: 'off' }), { urlSources: true }, 'flags win')
  t.throws(() => parseConfig(['--url-sources', 'maybe'], {}), { name: 'UsageError', message: /on or off/ })
  t.throws(() => parseConfig(['--allow-source-hosts', '10.0.0.0/40'], {}), { name: 'UsageError', message: /--allow-source-hosts: bad prefix/ })
})

/** A PUT whose body is sent in two parts, the second when the test says. */
function slowUpload(url: string, first: Buffer, rest: Buffer) {
  const req = request(url, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(first.length + rest.length), 'x-image-type': 'kvm' } })
  const answer = new Promise<{ status: number; body: any }>((resolve, reject) => {
    req.on('response', (res: IncomingMessage) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => {
        const text = Buffer.concat(parts).toString()
        let body: unknown = text
        try { body = JSON.parse(text) } catch { /* not JSON */ }
        resolve({ status: res.statusCode ?? 0, body })
      })
    })
    req.on('error', reject)
  })
  req.write(first)
  return { finish: () => req.end(rest), answer }
}

async function glanceCreate(glance: string, id: string): Promise<void> {
  const r = await getJson(`${glance}/v2/images`, { method: 'POST', headers: JSON_HDR, body: JSON.stringify({ id, disk_format: 'raw', container_format: 'bare' }) })
  if (r.status !== 201) throw new Error(`create ${id}: ${r.status} ${JSON.stringify(r.body)}`)
}

async function download(url: string): Promise<Buffer> {
  const r = await fetch(url)
  return Buffer.from(await r.arrayBuffer())
}

t.test('item 15: a stale upload cannot overwrite an image deleted and created again (Glance)', async (t) => {
  const { native, glance, dataDir } = await startTestService(t)
  const id = randomUUID()
  const A = Buffer.alloc(256 * 1024, 'A')
  const B = Buffer.alloc(100 * 1024, 'B')
  await glanceCreate(glance, id)
  const upA = slowUpload(`${glance}/v2/images/${id}/file`, A.subarray(0, 4096), A.subarray(4096))
  // A has claimed the image and is writing.
  await waitFor('upload A to start', async () => ((await getJson(`${native}/images/${id}`)).body.status === 'downloading' ? true : undefined))
  t.equal((await fetch(`${glance}/v2/images/${id}`, { method: 'DELETE' })).status, 204, 'deleted during upload A')
  await glanceCreate(glance, id)
  const upB = await getJson(`${glance}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: B })
  t.equal(upB.status, 204, 'upload B completes')
  t.same(await download(`${glance}/v2/images/${id}/file`), B, 'B is served')

  upA.finish()
  const a = await upA.answer
  t.equal(a.status, 409, 'the stale upload is refused')
  // Glance error bodies are plain text (webob's shape).
  t.match(a.body, /^409 Conflict\n\nimage [0-9a-f-]+ was deleted and created again during this upload; this upload's data was discarded/)

  const rec = (await getJson(`${native}/images/${id}`)).body
  t.match(rec, { status: 'complete', size: B.length, sha256: sha(B) }, "the record is B's")
  t.same(await download(`${native}/images/${id}/download`), B, "the bytes are B's")
  t.same(readdirSync(join(dataDir, 'tmp')), [], "A's temporary file is gone")
})

t.test('item 15: the same through the native upload (an id deleted there and created again through Glance)', async (t) => {
  const { native, glance, dataDir } = await startTestService(t)
  const A = Buffer.alloc(256 * 1024, 'a')
  const B = Buffer.alloc(64 * 1024, 'b')
  const upA = slowUpload(`${native}/images`, A.subarray(0, 4096), A.subarray(4096))
  const id = await waitFor('upload A to show up', async () => {
    const all = (await getJson(`${native}/images`)).body as Array<{ id: string; status: string }>
    return all.find((r) => r.status === 'downloading')?.id
  })
  t.equal((await fetch(`${native}/images/${id}`, { method: 'DELETE' })).status, 200)
  await glanceCreate(glance, id)
  t.equal((await getJson(`${glance}/v2/images/${id}/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: B })).status, 204)
  upA.finish()
  const a = await upA.answer
  t.equal(a.status, 409)
  t.match(a.body.message, /deleted and created again/)
  t.match((await getJson(`${native}/images/${id}`)).body, { status: 'complete', size: B.length, sha256: sha(B) })
  t.same(await download(`${native}/images/${id}/download`), B)
  t.same(readdirSync(join(dataDir, 'tmp')), [])
})

t.test('item 15: an upload whose image was only deleted still ends 404 and stores nothing', async (t) => {
  const { native, glance, dataDir } = await startTestService(t)
  const id = randomUUID()
  await glanceCreate(glance, id)
  const upA = slowUpload(`${glance}/v2/images/${id}/file`, Buffer.alloc(1000, 1), Buffer.alloc(1000, 2))
  await waitFor('upload to start', async () => ((await getJson(`${native}/images/${id}`)).body.status === 'downloading' ? true : undefined))
  t.equal((await fetch(`${glance}/v2/images/${id}`, { method: 'DELETE' })).status, 204)
  upA.finish()
  t.equal((await upA.answer).status, 404)
  t.same(readdirSync(join(dataDir, 'images')), [])
  t.same(readdirSync(join(dataDir, 'tmp')), [])
})
