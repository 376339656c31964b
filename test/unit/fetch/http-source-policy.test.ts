/**
 * Item 7 (SSRF with read-back), at the HTTP layer: openSource checks every
 * hop against the policy before anything is sent, by the address actually
 * connected to. Real loopback servers count their hits to prove that a
 * refused source was never asked.
 */
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { openResumableSource, openSource } from '../../../src/agent/import/http-source.js'
import { createSourcePolicy } from '../../../src/common/address-policy.js'

interface Srv { origin: string; hits: () => number }

async function serve(t: { teardown(f: () => void): void }, h: (req: IncomingMessage, res: ServerResponse) => void): Promise<Srv> {
  let hits = 0
  const s = createServer((q, r) => { hits++; h(q, r) })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  t.teardown(() => { s.closeAllConnections(); s.close() })
  return { origin: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, hits: () => hits }
}

const body = Buffer.from('image bytes')
const ok = (_q: IncomingMessage, res: ServerResponse) => { res.writeHead(200, { 'Content-Length': body.length }); res.end(body) }

t.test('item 7: a loopback source is refused before any request, by literal address and by name', async (t) => {
  const target = await serve(t, ok)
  const policy = createSourcePolicy()
  await t.rejects(openSource(`${target.origin}/img`, { idleTimeoutMs: 2000, policy }), { name: 'InvalidParamsError', message: /127\.0\.0\.1 is a loopback address; not fetched/ })
  const port = new URL(target.origin).port
  // localhost is a name: refused by the lookup, i.e. by the address the socket would connect to.
  await t.rejects(openSource(`http://localhost:${port}/img`, { idleTimeoutMs: 2000, policy }), { name: 'InvalidParamsError', message: /localhost resolves to (127\.0\.0\.1|::1), which is a loopback address/ })
  await t.rejects(openSource(`http://[::ffff:127.0.0.1]:${port}/img`, { idleTimeoutMs: 2000, policy }), { name: 'InvalidParamsError', message: /loopback address \(as IPv6\)/ })
  t.equal(target.hits(), 0, 'the loopback server was never asked')
  const allowed = await openSource(`${target.origin}/img`, { idleTimeoutMs: 2000, policy: createSourcePolicy({ allow: ['127.0.0.1'] }) })
  allowed.abandon()
  t.equal(target.hits(), 1, 'allowlisted, it is fetched')
})

t.test('item 7: a redirect from a trusted origin to a loopback one is refused at the hop', async (t) => {
  const forbidden = await serve(t, ok)
  const port = new URL(forbidden.origin).port
  const trusted = await serve(t, (q, res) => {
    res.writeHead(302, { Location: q.url === '/by-name' ? `http://localhost:${port}/secret` : `${forbidden.origin}/secret` })
    res.end()
  })
  const policy = createSourcePolicy({ trustedOrigins: [trusted.origin] })
  await t.rejects(openSource(`${trusted.origin}/img`, { idleTimeoutMs: 2000, policy }), { name: 'InvalidParamsError', message: /source http:\/\/127\.0\.0\.1:\d+: 127\.0\.0\.1 is a loopback address/ })
  await t.rejects(openSource(`${trusted.origin}/by-name`, { idleTimeoutMs: 2000, policy }), { name: 'InvalidParamsError', message: /localhost resolves to/ })
  t.equal(trusted.hits(), 2, 'the trusted origin was asked')
  t.equal(forbidden.hits(), 0, 'the redirect target never was')
})

t.test('item 7: a redirect to another scheme is not followed', async (t) => {
  const s = await serve(t, (_q, res) => { res.writeHead(301, { Location: 'file:///etc/passwd' }); res.end() })
  await t.rejects(openSource(`${s.origin}/img`, { idleTimeoutMs: 2000, policy: createSourcePolicy({ trustedOrigins: [s.origin] }) }), { name: 'UpstreamError', message: /redirect to a file: URL/ })
})

t.test('item 7: the Range resume goes through the same check (each reopen is a new hop)', async (t) => {
  const data = Buffer.alloc(1 << 20, 7)
  let n = 0
  const forbidden = await serve(t, ok)
  const trusted = await serve(t, (q, res) => {
    n++
    if (n === 1) {
      // First answer: cut part way, so the reader resumes.
      res.writeHead(200, { 'Content-Length': data.length, 'Accept-Ranges': 'bytes' })
      res.write(data.subarray(0, 1000), () => res.socket?.destroy())
      return
    }
    // The resume is redirected to a forbidden host.
    res.writeHead(302, { Location: `${forbidden.origin}/x` })
    res.end()
    void q
  })
  const src = await openResumableSource(`${trusted.origin}/img`, { idleTimeoutMs: 2000, maxResumes: 2, backoffMs: 1, policy: createSourcePolicy({ trustedOrigins: [trusted.origin] }) })
  const drain = async () => { for await (const c of src.body) void c }
  await t.rejects(drain(), { message: /resuming at byte \d+ failed: source http:\/\/127\.0\.0\.1:\d+: 127\.0\.0\.1 is a loopback address/ })
  t.equal(forbidden.hits(), 0)
})

t.test('a redirect to something that is not a URL fails the fetch (it used to throw out of the response handler)', async (t) => {
  const s = await serve(t, (_q, res) => { res.writeHead(302, { Location: 'http://[' }); res.end() })
  await t.rejects(openSource(`${s.origin}/img`, { idleTimeoutMs: 2000 }), { name: 'UpstreamError', message: /redirect to an invalid URL "http:\/\/\["/ })
})
