// Beyond the original: digests, Range/ETag/304, partial uploads never
// complete, the size limit, and clear 400s for bad input.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'node:http'
import { abortedUpload, getJson, nativeUpload, startTestService, waitFor } from '../../helpers/image-service.js'

const hex = (alg: string, b: Buffer): string => createHash(alg).update(b).digest('hex')

t.test('sha256 computed while storing, returned in metadata and headers', async (t) => {
  const { native } = await startTestService(t)
  const data = randomBytes(3 * 1024 * 1024 + 17)
  const up = await nativeUpload(native, data)
  t.equal(up.status, 200)
  t.equal(up.body.size, data.length)
  t.equal(up.body.sha256, hex('sha256', data), 'sha256 matches the host crypto')
  const res = await fetch(`${native}/images/${up.body.id}/download`)
  const body = Buffer.from(await res.arrayBuffer())
  t.ok(body.equals(data), 'bytes round-trip')
  t.equal(res.headers.get('x-image-sha256'), hex('sha256', data))
  t.equal(res.headers.get('x-image-blake2b512'), hex('blake2b512', data))
  t.equal(res.headers.get('etag'), `"${hex('sha256', data)}"`)
  const b64 = createHash('sha256').update(data).digest('base64')
  t.equal(res.headers.get('digest'), `sha-256=${b64}`)
  t.equal(res.headers.get('repr-digest'), `sha-256=:${b64}:`)
  t.equal(res.headers.get('accept-ranges'), 'bytes')
  t.equal(res.headers.get('content-length'), String(data.length))
})

t.test('Range, If-Range, ETag / If-None-Match, HEAD', async (t) => {
  const { native } = await startTestService(t)
  const data = Buffer.from('0123456789abcdefghij')
  const up = await nativeUpload(native, data)
  const url = `${native}/images/${up.body.id}/download`
  const etag = `"${hex('sha256', data)}"`

  const cases: Array<[string, number, string, string | null]> = [
    ['bytes=0-9', 206, '0123456789', 'bytes 0-9/20'],
    ['bytes=10-', 206, 'abcdefghij', 'bytes 10-19/20'],
    ['bytes=-5', 206, 'fghij', 'bytes 15-19/20'],
    ['bytes=5-5', 206, '5', 'bytes 5-5/20'],
    ['bytes=15-100', 206, 'fghij', 'bytes 15-19/20'],
    ['bytes=0-1,4-5', 200, data.toString(), null],
    ['items=0-1', 200, data.toString(), null],
    ['bytes=9-3', 200, data.toString(), null],
  ]
  for (const [range, status, want, cr] of cases) {
    const res = await fetch(url, { headers: { range } })
    t.equal(res.status, status, `${range} → ${status}`)
    t.equal(await res.text(), want)
    t.equal(res.headers.get('content-range'), cr)
    t.equal(res.headers.get('content-length'), String(want.length))
  }
  for (const range of ['bytes=20-', 'bytes=-0']) {
    const res = await fetch(url, { headers: { range } })
    t.equal(res.status, 416, `${range} → 416`)
    t.equal(res.headers.get('content-range'), 'bytes */20')
    t.same(await res.json(), { message: 'range not satisfiable', code: 416, stack: [] })
  }
  const ifRangeOk = await fetch(url, { headers: { range: 'bytes=0-1', 'if-range': etag } })
  t.equal(ifRangeOk.status, 206, 'If-Range with the current ETag → range')
  await ifRangeOk.arrayBuffer()
  const ifRangeOld = await fetch(url, { headers: { range: 'bytes=0-1', 'if-range': '"old"' } })
  t.equal(ifRangeOld.status, 200, 'If-Range with another ETag → full body')
  t.equal(await ifRangeOld.text(), data.toString())

  for (const inm of [etag, `W/${etag}`, `"x", ${etag}`, '*']) {
    const res = await fetch(url, { headers: { 'if-none-match': inm } })
    t.equal(res.status, 304, `If-None-Match ${inm} → 304`)
    t.equal(res.headers.get('etag'), etag)
    t.equal(await res.text(), '')
  }
  const other = await fetch(url, { headers: { 'if-none-match': '"other"' } })
  t.equal(other.status, 200)
  await other.arrayBuffer()

  const head = await fetch(url, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers.get('content-length'), '20')
  t.equal(head.headers.get('x-image-sha256'), hex('sha256', data))
  t.equal(await head.text(), '')

  const empty = await nativeUpload(native, '')
  t.equal(empty.body.status, 'complete', 'an empty image is fine')
  const er = await fetch(`${native}/images/${empty.body.id}/download`)
  t.equal(er.status, 200)
  t.equal(er.headers.get('content-length'), '0')
  t.equal(await er.text(), '')
})

t.test('partial uploads never appear as complete', async (t) => {
  const { native, dataDir } = await startTestService(t)
  const byName = async (name: string): Promise<any> => {
    const all = (await getJson(`${native}/images`)).body as any[]
    return all.find((r) => r.name === name)
  }
  // Content-Length announced, fewer bytes sent, connection dropped.
  await abortedUpload(`${native}/images`, 'PUT', { 'x-image-type': 'kvm', 'x-image-name': 'cl', 'content-length': '100000' }, Buffer.alloc(1000, 1))
  const cl = await waitFor('aborted upload recorded', async () => {
    const r = await byName('cl')
    return r?.status === 'error' ? r : undefined
  })
  t.equal(cl.status, 'error', 'Content-Length upload cut short → error')
  t.equal(cl.error, 'connection closed before all data arrived', 'the reason is recorded')
  t.equal(cl.sha256, '')
  t.notOk(existsSync(join(dataDir, 'images', cl.id)), 'no image file')
  t.equal((await getJson(`${native}/images/${cl.id}/download`)).body.message, 'incomplete image')

  // Chunked (no length) upload dropped mid-way.
  await abortedUpload(`${native}/images`, 'PUT', { 'x-image-type': 'kvm', 'x-image-name': 'chunked', 'transfer-encoding': 'chunked' }, Buffer.alloc(5000, 2))
  const ch = await waitFor('aborted chunked upload recorded', async () => {
    const r = await byName('chunked')
    return r?.status === 'error' ? r : undefined
  })
  t.equal(ch.status, 'error', 'chunked upload cut short → error')
  t.notOk(existsSync(join(dataDir, 'images', ch.id)))
  t.same(readdirSync(join(dataDir, 'tmp')), [], 'no temp files left behind')
  t.equal((await getJson(`${native}/images/by-name/chunked/latest`)).status, 404, 'not the latest of anything')
})

t.test('maximum upload size → 413', async (t) => {
  const { native, dataDir } = await startTestService(t, { maxUploadSize: 1000 })
  const ok = await nativeUpload(native, Buffer.alloc(1000))
  t.equal(ok.status, 200, 'exactly the limit is fine')

  const big = await nativeUpload(native, Buffer.alloc(2000))
  t.equal(big.status, 413, 'Content-Length over the limit → 413 before storing anything')
  t.match(big.body.message, /maximum size of 1000 bytes/)
  t.equal((await getJson(`${native}/images`)).body.length, 1, 'no record created')

  // Chunked: the limit is only seen while streaming.
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${native}/images`, { method: 'PUT', headers: { 'x-image-type': 'kvm', 'x-image-name': 'huge', 'transfer-encoding': 'chunked' } }, (r) => {
      let body = ''
      r.on('data', (c: Buffer) => { body += c.toString() })
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end(Buffer.alloc(5000))
  })
  t.equal(res.status, 413, 'streamed past the limit → 413')
  const huge = ((await getJson(`${native}/images`)).body as any[]).find((r) => r.name === 'huge')
  t.equal(huge.status, 'error')
  t.match(huge.error, /maximum size/)
  t.notOk(existsSync(join(dataDir, 'images', huge.id)), 'no file kept')
})

t.test('bad input gets clear 400s; ids are validated before touching paths', async (t) => {
  const { native } = await startTestService(t)
  const post = async (body: unknown): Promise<{ status: number; body: any }> => {
    const r = await getJson(`${native}/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: r.status, body: r.body }
  }
  t.same(await post([1]), { status: 400, body: { message: 'request body must be a JSON object' } })
  t.same(await post('x'), { status: 400, body: { message: 'request body must be a JSON object' } })
  t.same(await post({ source: 'ftp://example/x', type: 'kvm' }), { status: 400, body: { message: 'invalid image source' } })
  t.same(await post({ source: 'not a url', type: 'kvm' }), { status: 400, body: { message: 'invalid image source' } })
  t.same(await post({ source: 'http://127.0.0.1:1/x', type: 'kvm', comment: 5 }), { status: 400, body: { message: 'invalid comment' } })
  t.same(await post({ source: 'http://127.0.0.1:1/x', type: 'kvm', name: 'x'.repeat(300) }), { status: 400, body: { message: 'invalid name' } })
  const longName = await nativeUpload(native, 'x', { 'x-image-name': 'n'.repeat(256) })
  t.same(longName, { status: 400, body: { message: 'invalid X-Image-Name header' } })
  const huge = await getJson(`${native}/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(2 << 20) }) })
  t.equal(huge.status, 413, 'JSON bodies are capped')

  for (const id of ['..', '%2E%2E', '..%2F..%2Fetc%2Fpasswd', '%2Ftmp', '00000000-0000-4000-8000-000000000000%2F..']) {
    t.equal((await getJson(`${native}/images/${id}`)).status, 404, `GET ${id} → 404`)
    t.equal((await getJson(`${native}/images/${id}`, { method: 'DELETE' })).status, 404, `DELETE ${id} → 404`)
    t.equal((await getJson(`${native}/images/${id}/download`)).status, 404, `download ${id} → 404`)
  }
  t.equal((await getJson(`${native}/images/..%2F..`)).status, 404)
})
