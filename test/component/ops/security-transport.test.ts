/**
 * The real app (src/http/app.ts) over fakes, issue 12 items 9 and 13 at the
 * HTTP level: the Host check (DNS rebinding), HEAD answered from the dry run,
 * and the idle timeout of a download whose client stops reading.
 * The same items against real ZFS: test/integration/security-transport.test.ts.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { hostname } from 'node:os'
import { once } from 'node:events'
import { startFakeAgent, STREAM, type FakeAgent } from './fake-agent.js'
import { hostAllowed, hostOf } from '../../../src/agent/http/host-check.js'

interface Res { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One request with exactly this Host header (fetch cannot set it). */
function withHost(a: FakeAgent, host: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Res> {
  const u = new URL(a.url)
  return new Promise((resolve, reject) => {
    const r = http.request({
      hostname: u.hostname, port: u.port, path, method, setHost: false,
      headers: { Host: host, ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    r.on('error', reject)
    r.end(body)
  })
}

/** Raw bytes on a fresh connection; the whole answer (the server closes or we stop after `ms`). */
async function raw(a: FakeAgent, request: string, ms = 2000): Promise<string> {
  const u = new URL(a.url)
  const s = net.connect(Number(u.port), u.hostname)
  await once(s, 'connect')
  s.write(request)
  let text = ''
  s.setEncoding('utf8')
  s.on('data', (c: string) => { text += c })
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, ms))])
  s.destroy()
  return text
}

const rpc = JSON.stringify({ jsonrpc: '2.0', method: 'ListImages', params: {}, id: 1 })

t.test('hostOf: port, brackets, case and a trailing dot', async (t) => {
  t.equal(hostOf('127.0.0.1:19999'), '127.0.0.1')
  t.equal(hostOf('[::1]:19999'), '::1')
  t.equal(hostOf('[::1]'), '::1')
  t.equal(hostOf('LocalHost.'), 'localhost')
  t.equal(hostOf('evil.example:80'), 'evil.example')
  t.equal(hostOf('::1'), null, 'IPv6 without brackets is malformed')
  t.equal(hostOf('a:b:c'), null)
  t.equal(hostOf(''), null)
  t.equal(hostAllowed(undefined), true, 'no Host header (HTTP/1.0): allowed')
  t.equal(hostAllowed('evil.example', ['*']), true, '* turns the check off')
  t.equal(hostAllowed('Agent.Example:1', ['agent.example']), true)
  t.equal(hostAllowed('127.0.0.1.evil.example'), false)
  t.equal(hostAllowed('localhost.evil.example'), false)
})

t.test('item 9: Host header check: a rebound name gets 421 and nothing runs', async (t) => {
  const a = await startFakeAgent(t)
  const port = new URL(a.url).port
  for (const [method, path, body] of [
    ['POST', '/_mistify_RPC_', rpc], ['GET', '/snapshots/download?id=guests/g1@s1', undefined],
    ['HEAD', '/snapshots/download?id=guests/g1@s1', undefined], ['GET', '/healthz', undefined], ['GET', '/metrics', undefined],
  ] as const) {
    const r = await withHost(a, `evil.example:${port}`, method, path, body)
    t.equal(r.status, 421, `${method} ${path} with Host evil.example`)
    if (method !== 'HEAD') t.match(r.body, /^misdirected request: this agent does not answer to Host "evil\.example:\d+"/)
    t.match(r.headers['content-type'], /^text\/plain/)
    t.match(r.headers['x-request-id'], /\S/, 'still carries a request id')
  }
  t.same(a.calls, [], 'no method, download or dry run was called')

  for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, `${hostname()}:${port}`, '10.1.2.3:19999']) {
    const r = await withHost(a, host, 'POST', '/_mistify_RPC_', rpc)
    t.equal(r.status, 200, `Host ${host}`)
  }
  t.equal(a.calls.filter((c) => c.method === 'ListImages').length, 7, 'each of them ran')

  // HTTP/1.0 without a Host header: no browser sends that.
  const old = await raw(a, 'GET /healthz HTTP/1.0\r\n\r\n')
  t.match(old, /^HTTP\/1\.[01] 200 /, 'HTTP/1.0 without Host is served')
})

t.test('item 9: --allowed-hosts adds names; * turns the check off', async (t) => {
  const a = await startFakeAgent(t, { allowedHosts: ['agent.example'] })
  t.equal((await withHost(a, 'agent.example:19999', 'POST', '/_mistify_RPC_', rpc)).status, 200)
  t.equal((await withHost(a, 'Agent.Example.', 'POST', '/_mistify_RPC_', rpc)).status, 200, 'case and a trailing dot folded')
  t.equal((await withHost(a, 'other.example', 'POST', '/_mistify_RPC_', rpc)).status, 421)
  const any = await startFakeAgent(t, { allowedHosts: ['*'] })
  t.equal((await withHost(any, 'other.example', 'POST', '/_mistify_RPC_', rpc)).status, 200)
})

t.test('item 9: the Host check comes before the token; both apply', async (t) => {
  const token = 'tok-123'
  const a = await startFakeAgent(t, { token })
  t.equal((await withHost(a, 'evil.example', 'POST', '/_mistify_RPC_', rpc, { Authorization: `Bearer ${token}` })).status, 421, 'a token does not excuse a foreign Host')
  t.equal((await withHost(a, '127.0.0.1', 'POST', '/_mistify_RPC_', rpc)).status, 401)
  t.equal((await withHost(a, '127.0.0.1', 'POST', '/_mistify_RPC_', rpc, { Authorization: `Bearer ${token}` })).status, 200)
})

t.test('item 13: HEAD is answered from the dry run: headers, no stream', async (t) => {
  const a = await startFakeAgent(t)
  const r = await withHost(a, '127.0.0.1', 'HEAD', '/snapshots/download?id=guests/g1@s1')
  t.equal(r.status, 200)
  t.equal(r.headers['x-estimated-size'], String(STREAM.length))
  t.equal(r.headers['x-send-kind'], 'full')
  t.equal(r.headers['x-snapshot'], 'tank/guests/g1@s1')
  t.equal(r.body, '')
  t.same(a.calls.map((c) => c.method), ['describe'], 'describe only: open() (hold + zfs send) never ran')
  const missing = await withHost(a, '127.0.0.1', 'HEAD', '/snapshots/download?id=guests/g1')
  t.equal(missing.status, 404, 'a refusal has its status on HEAD too')
  const get = await withHost(a, '127.0.0.1', 'GET', '/snapshots/download?id=guests/g1@s1')
  t.equal(get.status, 200)
  t.equal(get.headers['x-estimated-size'], String(STREAM.length), 'GET carries the same headers')
})

t.test('item 13: a client that stops reading is cut after the idle timeout', async (t) => {
  const a = await startFakeAgent(t, {}, { idleTimeoutMs: 300 })
  a.endlessDownloads = true
  const u = new URL(a.url)
  const s = net.connect(Number(u.port), u.hostname)
  await once(s, 'connect')
  s.pause() // never read: the socket buffers fill and the agent's writes block
  s.write('GET /snapshots/download?id=guests/g1@s1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  const started = Date.now()
  s.on('error', () => {})
  // A paused socket does not see the agent hang up; the agent's side tells.
  while (a.released === 0 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 50))
  const tookMs = Date.now() - started
  t.equal(a.released, 1, `the lease was released (zfs send killed, hold dropped) after ${tookMs} ms`)
  t.ok(tookMs >= 300, 'not before the idle timeout')
  t.ok(a.logs.some((l) => JSON.parse(l).msg === 'download client took no bytes for the idle timeout; cutting it'), 'and it said so')
  const closed = once(s, 'close').then(() => true)
  s.resume() // read what was buffered: then the close arrives
  t.equal(await Promise.race([closed, new Promise((r) => setTimeout(() => r(false), 5000))]), true, 'the connection was closed')
  s.destroy()

  // A client that reads, slowly but steadily, is not cut.
  a.endlessDownloads = false
  const slow = await new Promise<number>((resolve, reject) => {
    http.get(`${a.url}/snapshots/download?id=guests/g1@s1`, (res) => {
      let n = 0
      res.on('data', (c: Buffer) => { n += c.length; res.pause(); setTimeout(() => res.resume(), 100) })
      res.on('end', () => resolve(n))
      res.on('error', reject)
    }).on('error', reject)
  })
  t.equal(slow, STREAM.length, 'a slow reader gets the whole stream')
})
