// Routing through @koa/router: 404/405 + Allow from the router with each API's own bodies,
// exact paths, conditional GETs, and JSON bodies bounded by common/body.ts.
import t from 'tap'
import { request, type IncomingHttpHeaders } from 'node:http'
import { getJson, nativeUpload, startTestService, TESTDATA } from '../../helpers/image-service.js'

interface Raw { status: number; headers: IncomingHttpHeaders; body: string }

/** node:http, not fetch(): any method, and only the headers given (fetch adds its own to conditionals). */
function raw(url: string, method: string, headers: Record<string, string> = {}, chunks: Buffer[] = []): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const got: Buffer[] = []
      res.on('data', (c: Buffer) => got.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(got).toString() }))
    })
    req.on('error', reject)
    for (const c of chunks) req.write(c)
    req.end()
  })
}

const NATIVE_405 = JSON.stringify({ message: 'method not allowed', code: 405, stack: [] })
const GLANCE_405 = '405 Method Not Allowed\n\nThe method specified is not allowed for this resource.\n\n   '

t.test('native API: 405 + Allow from the router, in the original HTTPError shape', async (t) => {
  const { native } = await startTestService(t)
  const up = await nativeUpload(native, TESTDATA)
  const cases: Array<[string, string, string]> = [
    ['PATCH', '/images', 'HEAD, GET, PUT, POST'],
    ['POST', `/images/${up.body.id}`, 'HEAD, GET, DELETE'],
    ['PUT', `/images/${up.body.id}/download`, 'HEAD, GET'],
    ['DELETE', '/images/by-name/x/latest', 'HEAD, GET'],
    // Not the router's 200 (OPTIONS) or 501 (a method it does not know): 405 as the original's mux.
    ['OPTIONS', '/images', 'HEAD, GET, PUT, POST'],
    ['PROPFIND', '/images', 'HEAD, GET, PUT, POST'],
  ]
  for (const [method, path, allow] of cases) {
    const r = await raw(`${native}${path}`, method)
    t.equal(r.status, 405, `${method} ${path} → 405`)
    t.equal(r.headers.allow, allow, `${method} ${path}: Allow`)
    t.equal(r.body, NATIVE_405)
  }
  const nf = await raw(`${native}/IMAGES`, 'GET')
  t.equal(nf.status, 404, 'paths are case-sensitive')
  t.equal(nf.body, JSON.stringify({ message: 'not found', code: 404, stack: [] }))
  t.equal((await raw(`${native}/nope`, 'OPTIONS')).status, 404, 'OPTIONS on an unknown path → 404')
  const del = await raw(`${native}/images/${up.body.id}/`, 'DELETE')
  t.equal(del.status, 200, 'a trailing slash on a non-GET is dropped (StrictSlash), then routed')
  t.equal((await getJson(`${native}/images/${up.body.id}`)).status, 404)
})

t.test('Glance API: 405 + Allow from the router, in webob plain text', async (t) => {
  const { glance } = await startTestService(t)
  const created = await getJson(`${glance}/v2/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  const id = created.body.id as string
  const cases: Array<[string, string, string]> = [
    ['DELETE', '/v2/images', 'HEAD, GET, POST'],
    ['POST', `/v2/images/${id}`, 'HEAD, GET, PATCH, DELETE'],
    ['POST', `/v2/images/${id}/file`, 'PUT, HEAD, GET'],
    ['GET', `/v2/images/${id}/tags/t`, 'PUT, DELETE'],
    ['OPTIONS', '/v2/images', 'HEAD, GET, POST'],
    ['PUT', '/versions', 'HEAD, GET'],
  ]
  for (const [method, path, allow] of cases) {
    const r = await raw(`${glance}${path}`, method)
    t.equal(r.status, 405, `${method} ${path} → 405`)
    t.equal(r.headers.allow, allow, `${method} ${path}: Allow`)
    t.match(r.headers['content-type'], /^text\/plain/)
    t.match(r.headers['x-openstack-request-id'], /^req-/, 'request id on router answers too')
    t.equal(r.body, GLANCE_405)
  }
  for (const path of ['/v2/nothing', '/v2/images/', '/V2/images']) {
    const r = await raw(`${glance}${path}`, 'GET')
    t.equal(r.status, 404, `GET ${path} → 404 (exact paths)`)
    t.equal(r.body, '404 Not Found\n\nThe resource could not be found.\n\n   ')
  }
})

t.test('conditional GET: If-None-Match decides, whatever Cache-Control says', async (t) => {
  const { native, glance } = await startTestService(t)
  const up = await nativeUpload(native, TESTDATA)
  const etag = `"${up.body.sha256 as string}"`
  for (const url of [`${native}/images/${up.body.id}/download`, `${glance}/v2/images/${up.body.id}/file`]) {
    // fetch() sends Cache-Control: no-cache with every conditional; Koa's ctx.fresh would answer those 200.
    for (const headers of [{ 'if-none-match': etag }, { 'if-none-match': etag, 'cache-control': 'no-cache', pragma: 'no-cache' }]) {
      const r = await raw(url, 'GET', headers)
      t.equal(r.status, 304, `${url}: ${JSON.stringify(headers)} → 304`)
      t.equal(r.headers.etag, etag)
      t.equal(r.body, '')
    }
    const head = await raw(url, 'HEAD', { 'if-none-match': `W/${etag}` })
    t.equal(head.status, 304, 'HEAD too, weak comparison')
    const ims = await raw(url, 'GET', { 'if-modified-since': new Date(Date.now() + 60_000).toUTCString() })
    t.equal(ims.status, 200, 'If-Modified-Since alone is not a validator we use')
    t.equal(ims.body, TESTDATA)
  }
  const md5 = await raw(`${glance}/v2/images/${up.body.id}/file`, 'GET', { 'if-none-match': etag })
  t.ok(md5.headers['content-md5'], 'the 304 carries the image headers (Content-MD5)')
})

t.test('JSON bodies: bounded by the one reader, also when streamed without Content-Length', async (t) => {
  const { native, glance } = await startTestService(t)
  const chunks = Array.from({ length: 17 }, () => Buffer.alloc(64 * 1024, 0x20))
  const n = await raw(`${native}/images`, 'POST', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, chunks)
  t.equal(n.status, 413)
  t.equal(n.body, JSON.stringify({ message: 'request body exceeds 1048576 bytes' }))
  t.equal(n.headers.connection, 'close', 'the rest of the body is not awaited')
  const g = await raw(`${glance}/v2/images`, 'POST', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, chunks)
  t.equal(g.status, 413)
  t.equal(g.body, '413 Request Entity Too Large\n\nrequest body exceeds 1048576 bytes\n\n   ')
  const small = await raw(`${glance}/v2/images`, 'POST', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, [Buffer.from('{"na'), Buffer.from('me":"chunked"}')])
  t.equal(small.status, 201, 'a chunked body under the limit is read whole')
  t.equal(JSON.parse(small.body).name, 'chunked')
})

t.test('a path that does not percent-decode names nothing, in either API', async (t) => {
  const { native, glance } = await startTestService(t)
  for (const method of ['GET', 'POST', 'DELETE']) {
    const n = await raw(`${native}/images/%zz`, method)
    t.equal(n.status, 404, `native ${method} /images/%zz`)
    t.equal(n.body, JSON.stringify({ message: 'not found', code: 404, stack: [] }))
    const g = await raw(`${glance}/v2/images/%zz/file`, method)
    t.equal(g.status, 404, `glance ${method} /v2/images/%zz/file`)
    t.equal(g.body, '404 Not Found\n\nThe resource could not be found.\n\n   ')
  }
})
