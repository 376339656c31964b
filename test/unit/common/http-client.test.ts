/** The common outbound client: what both fetchers rely on, in its own error kinds (no caller's wording). */
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { gzipSync } from 'node:zlib'
import type { AddressInfo } from 'node:net'
import { httpGet, httpGetResumable, HttpClientError } from '../../../src/common/http-client.js'
import { createSourcePolicy } from '../../../src/common/address-policy.js'

interface Srv { origin: string; seen: IncomingMessage[] }

async function serve(t: { teardown(f: () => void): void }, h: (req: IncomingMessage, res: ServerResponse) => void): Promise<Srv> {
  const seen: IncomingMessage[] = []
  const s = createServer((q, r) => { seen.push(q); h(q, r) })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  t.teardown(() => { s.closeAllConnections(); s.close() })
  return { origin: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, seen }
}

async function drain(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of body) parts.push(c)
  return Buffer.concat(parts)
}

const text = Buffer.from('the image bytes, as sent')

t.test('bytes as sent: a gzip Content-Encoding is not decoded, and the caller\'s headers go out', async (t) => {
  const gz = gzipSync(text)
  const s = await serve(t, (_q, res) => { res.writeHead(200, { 'Content-Encoding': 'gzip', 'Content-Length': gz.length, ETag: '"e"', 'Accept-Ranges': 'bytes' }); res.end(gz) })
  const r = await httpGet(`${s.origin}/x`, { idleTimeoutMs: 2000, headers: { 'user-agent': 'probe' } })
  t.match(r, { status: 200, size: gz.length, etag: '"e"', acceptRanges: true })
  t.ok((await drain(r.body)).equals(gz), 'still gzipped')
  t.equal(s.seen[0]?.headers['user-agent'], 'probe')
  t.equal(s.seen[0]?.headers.range, undefined, 'no Range unless asked')
})

t.test('redirects: the five standard ones are followed, up to maxRedirects', async (t) => {
  const s = await serve(t, (q, res) => {
    const n = Number(/^\/r(\d+)\/(\d+)$/.exec(q.url ?? '')?.[2] ?? -1)
    const code = Number(/^\/r(\d+)/.exec(q.url ?? '')?.[1] ?? 0)
    if (n > 0) { res.writeHead(code, { Location: `/r${code}/${n - 1}` }); res.end(); return }
    res.writeHead(200, { 'Content-Length': text.length }); res.end(text)
  })
  for (const code of [301, 302, 303, 307, 308]) {
    const r = await httpGet(`${s.origin}/r${code}/2`, { idleTimeoutMs: 2000 })
    t.ok((await drain(r.body)).equals(text), `${code} followed`)
  }
  await t.rejects(httpGet(`${s.origin}/r302/3`, { idleTimeoutMs: 2000, maxRedirects: 2 }), { name: 'HttpClientError', kind: 'redirects', detail: { status: 302, expected: 200 } })
  await t.rejects(httpGet(`${s.origin}/r300/1`, { idleTimeoutMs: 2000 }), { name: 'HttpClientError', kind: 'status', detail: { status: 300, expected: 200 } }, '300 is an answer, not a redirect')
})

t.test('a redirect to another scheme or to no URL fails with its kind', async (t) => {
  const s = await serve(t, (q, res) => { res.writeHead(302, { Location: q.url === '/file' ? 'file:///etc/passwd' : 'http://[' }); res.end() })
  await t.rejects(httpGet(`${s.origin}/file`, { idleTimeoutMs: 2000 }), { name: 'HttpClientError', kind: 'scheme', url: 'file:///etc/passwd' })
  await t.rejects(httpGet(`${s.origin}/bad`, { idleTimeoutMs: 2000 }), { name: 'HttpClientError', kind: 'bad-redirect', detail: { reason: 'http://[' } })
})

t.test('the address policy refuses before anything is sent, on the first hop and on a redirect', async (t) => {
  const target = await serve(t, (_q, res) => { res.end('secret') })
  const hop = await serve(t, (_q, res) => { res.writeHead(302, { Location: `${target.origin}/secret` }); res.end() })
  await t.rejects(httpGet(`${target.origin}/x`, { idleTimeoutMs: 2000, policy: createSourcePolicy() }), { name: 'HttpClientError', kind: 'denied', message: /127\.0\.0\.1 is a loopback address; not fetched/ })
  const port = new URL(target.origin).port
  await t.rejects(httpGet(`http://localhost:${port}/x`, { idleTimeoutMs: 2000, policy: createSourcePolicy() }), { name: 'HttpClientError', kind: 'denied', message: /localhost resolves to/ })
  await t.rejects(httpGet(`${hop.origin}/x`, { idleTimeoutMs: 2000, policy: createSourcePolicy({ trustedOrigins: [hop.origin] }) }), { name: 'HttpClientError', kind: 'denied' })
  t.equal(hop.seen.length, 1)
  t.equal(target.seen.length, 0, 'the refused host was never asked')
})

t.test('idle timeout before the headers; the abort signal before and during the body', async (t) => {
  const s = await serve(t, (q, res) => {
    if (q.url === '/silent') return
    res.writeHead(200, { 'Content-Length': 1000 }); res.write('x')
  })
  await t.rejects(httpGet(`${s.origin}/silent`, { idleTimeoutMs: 200 }), { name: 'HttpClientError', kind: 'stalled', detail: { idleTimeoutMs: 200 } })
  const before = new AbortController()
  before.abort()
  await t.rejects(httpGet(`${s.origin}/x`, { idleTimeoutMs: 2000, signal: before.signal }), { name: 'HttpClientError', kind: 'network' })
  const during = new AbortController()
  const r = await httpGet(`${s.origin}/x`, { idleTimeoutMs: 5000, signal: during.signal })
  setTimeout(() => during.abort(), 50)
  await t.rejects(drain(r.body), { name: 'HttpClientError', kind: 'body', detail: { bytes: 1 } })
})

t.test('mapError words every failure, at the open and in the body', async (t) => {
  class Mine extends Error {}
  const mapError = (e: HttpClientError) => new Mine(`${e.kind}`)
  const s = await serve(t, (q, res) => {
    if (q.url === '/404') { res.writeHead(404); res.end(); return }
    res.writeHead(200, { 'Content-Length': 100 }); res.write('0123456789', () => res.destroy())
  })
  await t.rejects(httpGet(`${s.origin}/404`, { idleTimeoutMs: 2000, mapError }), new Mine('status'))
  const r = await httpGet(`${s.origin}/cut`, { idleTimeoutMs: 2000, mapError })
  await t.rejects(drain(r.body), { constructor: Mine, message: /^(body|truncated)$/ })
  const un = await httpGet(`${s.origin}/cut`, { idleTimeoutMs: 2000 })
  await t.rejects(drain(un.body), HttpClientError, 'unmapped, the client\'s own error')
})

t.test('resumable: each reconnection asks for the missing bytes; a wrong Content-Range ends it', async (t) => {
  const data = Buffer.alloc(200_000, 3)
  const s = await serve(t, (q, res) => {
    if (!q.headers.range) {
      res.writeHead(200, { 'Content-Length': data.length, 'Accept-Ranges': 'bytes' })
      res.write(data.subarray(0, 1000), () => res.socket?.destroy())
      return
    }
    // Answers the range from the wrong place.
    res.writeHead(206, { 'Content-Length': 10, 'Content-Range': `bytes 0-9/${data.length}` })
    res.end(data.subarray(0, 10))
  })
  const mapped: HttpClientError[] = []
  const r = await httpGetResumable(`${s.origin}/x`, { idleTimeoutMs: 2000, maxResumes: 2, backoffMs: 1, mapError: (e) => { mapped.push(e); return e } })
  await t.rejects(drain(r.body), { name: 'HttpClientError', kind: 'resume', detail: { bytes: 1000 } })
  t.equal(r.resumes(), 2)
  t.equal(r.delivered(), 1000)
  t.same(s.seen.slice(1).map((q) => q.headers.range), ['bytes=1000-', 'bytes=1000-'])
  t.equal(mapped.length, 1, 'mapped once, at the outside')
  t.match(mapped[0], { kind: 'resume', detail: { interrupted: { kind: /^(body|truncated)$/ } }, cause: { name: 'HttpClientError', kind: 'content-range', detail: { bytes: 1000, reason: `bytes 0-9/${data.length}` } } })
})

t.test('abandon: a body never read gives its connection back, also one that arrived whole', async (t) => {
  let closed = 0
  const s = await serve(t, (q, res) => {
    q.socket.once('close', () => { closed++ })
    res.writeHead(200, { 'Content-Length': text.length }); res.end(text)
  })
  const r = await httpGet(`${s.origin}/x`, { idleTimeoutMs: 2000 })
  await new Promise((ok) => setTimeout(ok, 100)) // the whole body is in by now
  r.abandon()
  for (let i = 0; i < 50 && closed === 0; i++) await new Promise((ok) => setTimeout(ok, 20))
  t.equal(closed, 1, 'the server saw the connection go')
})

t.test('a redirect whose own body stalls: the fetch goes on, and the stall later hurts no one', async (t) => {
  const s = await serve(t, (q, res) => {
    if (q.url === '/r') { res.writeHead(302, { Location: '/ok', 'Content-Length': 100 }); res.write('x'); return }
    res.writeHead(200, { 'Content-Length': text.length }); res.end(text)
  })
  const r = await httpGet(`${s.origin}/r`, { idleTimeoutMs: 200 })
  t.ok((await drain(r.body)).equals(text))
  await new Promise((ok) => setTimeout(ok, 500)) // past the idle timeout of the redirect's request
  t.pass('no uncaught error from the discarded body')
})

t.test('a server that dies mid-body: every byte that arrived is delivered before the failure (none left for a resume to fetch again)', async (t) => {
  // A killed server's kernel still sends what it had, then FIN. The reader is slow (a busy zfs receive),
  // so bytes are waiting in the response's buffer when the connection ends; they must not go with it.
  const data = Buffer.alloc(8 << 20, 7)
  const sent = 3 << 20
  const s = await serve(t, (_q, res) => {
    res.writeHead(200, { 'Content-Length': data.length })
    res.write(data.subarray(0, sent), () => res.socket?.end())
  })
  const r = await httpGet(`${s.origin}/x`, { idleTimeoutMs: 5000 })
  let got = 0
  const e = await (async () => {
    for await (const c of r.body) { got += c.length; await new Promise((ok) => setTimeout(ok, 5)) }
  })().then(() => undefined, (x: unknown) => x)
  t.match(e, { name: 'HttpClientError', kind: /^(body|truncated)$/, detail: { bytes: sent } })
  t.equal(got, sent, 'all the bytes sent')
})

t.test('replicas: a 4xx is every replica\'s answer; 5xx and refused connections fail over; all failing names each', async (t) => {
  const a = await serve(t, (q, res) => { res.writeHead(q.url === '/gone' ? 404 : 502); res.end() })
  const b = await serve(t, (_q, res) => { res.writeHead(200, { 'Content-Length': text.length }); res.end(text) })
  await t.rejects(httpGetResumable([`${a.origin}/gone`, `${b.origin}/gone`], { idleTimeoutMs: 2000 }), { name: 'HttpClientError', kind: 'status', detail: { status: 404 } })
  t.equal(b.seen.length, 0, 'a 404 is not asked of the next replica')
  const r = await httpGetResumable([`${a.origin}/x`, `${b.origin}/x`], { idleTimeoutMs: 2000 })
  t.ok((await drain(r.body)).equals(text), '502: the next replica served')
  t.equal(r.servedBy(), `${b.origin}/x`)
  const dead = await serve(t, () => {})
  const port = new URL(dead.origin).port
  const e = await httpGetResumable([`${a.origin}/x`, `http://127.0.0.1:${port}/x`], { idleTimeoutMs: 300 }).then(() => undefined, (x: unknown) => x)
  t.match(e, { kind: 'replicas', detail: { failures: [{ kind: 'status', detail: { status: 502 } }, { kind: 'stalled' }] } })
  t.match((e as Error).message, new RegExp(`^every replica failed: ${a.origin}/x: expected HTTP 200, received 502; http://127\\.0\\.0\\.1:${port}/x: nothing received`))
})

t.test('replicas: without a strong ETag or an identity header, a body resumes only where it started', async (t) => {
  const data = Buffer.alloc(100_000, 5)
  const handler = (etag: string | undefined) => (q: IncomingMessage, res: ServerResponse) => {
    const start = Number(/^bytes=(\d+)-$/.exec(q.headers.range ?? '')?.[1] ?? 0)
    res.writeHead(start ? 206 : 200, {
      'Content-Length': data.length - start, ...(etag ? { ETag: etag } : {}),
      ...(start ? { 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    })
    if (!start) res.write(data.subarray(0, 1000), () => res.socket?.destroy())
    else res.end(data.subarray(start))
  }
  for (const etag of [undefined, 'W/"weak"']) {
    const a = await serve(t, handler(etag))
    const b = await serve(t, handler(etag))
    const r = await httpGetResumable([`${a.origin}/x`, `${b.origin}/x`], { idleTimeoutMs: 2000, backoffMs: 1 })
    t.ok((await drain(r.body)).equals(data), `ETag ${etag}: whole`)
    t.same(a.seen.map((q) => [q.headers.range, q.headers['if-range']]), [[undefined, undefined], ['bytes=1000-', undefined]], `ETag ${etag}: resumed on the same replica, no If-Range`)
    t.equal(b.seen.length, 0)
  }
})
