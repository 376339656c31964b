import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { openResumableSource, openSource } from '../../../src/agent/import/http-source.js'

async function serve(t: { teardown(f: () => void): void }, h: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const s = createServer(h)
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  t.teardown(() => { s.closeAllConnections(); s.close() })
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/img`
}

async function drain(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of body) parts.push(c)
  return Buffer.concat(parts)
}

const data = randomBytes(3 << 20)

t.test('a connection closed early is a failure, not a short body', async (t) => {
  const url = await serve(t, (_q, res) => {
    res.writeHead(200, { 'Content-Length': data.length })
    res.write(data.subarray(0, 1 << 20), () => res.socket?.destroy())
  })
  const src = await openSource(url, { idleTimeoutMs: 5000 })
  t.equal(src.size, data.length)
  await t.rejects(drain(src.body), { message: /^image source http:.*: (aborted|connection closed early) after \d+ bytes$/ })
})

t.test('a kept-alive connection the server drops as it is reused is asked again once', async (t) => {
  // What a server's keep-alive timeout does when it fires just as the agent reuses the socket.
  const served = new WeakMap<object, number>()
  let dropped = 0
  const url = await serve(t, (req, res) => {
    const n = (served.get(req.socket) ?? 0) + 1
    served.set(req.socket, n)
    if (n === 2) { dropped++; req.socket.destroy(); return }
    res.writeHead(200, { 'Content-Length': 1000 }); res.end(data.subarray(0, 1000))
  })
  t.ok((await drain((await openSource(url, { idleTimeoutMs: 5000 })).body)).equals(data.subarray(0, 1000)))
  const again = await openSource(url, { idleTimeoutMs: 5000 })
  t.ok((await drain(again.body)).equals(data.subarray(0, 1000)), 'the second fetch succeeded on a new connection')
  t.equal(dropped, 1, 'the reused connection was dropped once')
})

t.test('a stalled body fails after the idle timeout', async (t) => {
  const url = await serve(t, (_q, res) => { res.writeHead(200, { 'Content-Length': data.length }); res.write(data.subarray(0, 1000)) })
  const src = await openSource(url, { idleTimeoutMs: 300 })
  await t.rejects(drain(src.body), { message: /stalled for 300 ms/ })
})

t.test('a slow reader is not a stalled source: idle counts only while the reader waits', async (t) => {
  // zfs receive applying backpressure pauses the socket; under load that is seconds, not the source's fault.
  const url = await serve(t, (_q, res) => { res.writeHead(200, { 'Content-Length': data.length }); res.end(data) })
  const src = await openSource(url, { idleTimeoutMs: 200 })
  const parts: Buffer[] = []
  for await (const c of src.body) {
    parts.push(c)
    if (parts.length <= 2) await new Promise((r) => setTimeout(r, 600)) // three times the idle limit, twice
  }
  t.ok(Buffer.concat(parts).equals(data), 'the whole body, no stall reported')
  await new Promise((r) => setTimeout(r, 700)) // waiting before the first read does not count either
  const late = await openSource(url, { idleTimeoutMs: 200 })
  await new Promise((r) => setTimeout(r, 600))
  t.ok((await drain(late.body)).equals(data))
})

t.test('resume: a cut picks up where it stopped, bytes identical, nothing fetched twice', async (t) => {
  let sent = 0
  let conns = 0
  const url = await serve(t, (req, res) => {
    conns++
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    const start = m ? Number(m[1]) : 0
    const body = data.subarray(start)
    res.writeHead(m ? 206 : 200, {
      'Content-Length': body.length, ETag: '"a"', 'Accept-Ranges': 'bytes',
      ...(m ? { 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    })
    const upto = conns < 3 ? Math.min(body.length, 1 << 20) : body.length
    sent += upto
    if (conns < 3) res.write(body.subarray(0, upto), () => res.socket?.destroy())
    else res.end(body)
  })
  const src = await openResumableSource(url, { idleTimeoutMs: 5000, backoffMs: 1 })
  const got = await drain(src.body)
  t.ok(got.equals(data), 'bit-identical')
  t.equal(src.resumes(), 2)
  t.equal(src.delivered(), data.length)
  t.ok(sent <= data.length + (256 << 10), `served ${sent} for ${data.length}`)
})

t.test('resume refuses an image that changed (ETag)', async (t) => {
  let conns = 0
  const url = await serve(t, (req, res) => {
    conns++
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0)
    res.writeHead(start ? 206 : 200, {
      'Content-Length': data.length - start, ETag: conns === 1 ? '"a"' : '"b"',
      ...(start ? { 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    })
    if (conns === 1) res.write(data.subarray(0, 1 << 20), () => res.socket?.destroy())
    else res.end(data.subarray(start))
  })
  const src = await openResumableSource(url, { idleTimeoutMs: 5000, backoffMs: 1 })
  await t.rejects(drain(src.body), { message: /the image changed while it was being fetched/ })
})

t.test('stopping early ends the download', async (t) => {
  let closed = false
  const url = await serve(t, (_q, res) => {
    res.writeHead(200, { 'Content-Length': data.length * 10 })
    res.on('close', () => { closed = true })
    const pump = () => { while (res.write(data)) { /* fill */ } }
    res.on('drain', pump)
    pump()
  })
  const src = await openResumableSource(url, { idleTimeoutMs: 5000 })
  for await (const _ of src.body) break
  await new Promise((r) => setTimeout(r, 200))
  t.ok(closed, 'the server saw the connection go')
})
