/**
 * The real app (src/http/app.ts) over fakes: /healthz, /metrics, bearer
 * auth (and the token never logged), request ids, per-RPC log lines, unix
 * socket listening.
 */
import t from 'tap'
import http from 'node:http'
import { mkdtempSync, statSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { req, startFakeAgent, STREAM } from './fake-agent.js'
import { createMetrics } from '../../../src/agent/ops/metrics.js'
import { listen, ListenError, SOCKET_MODE } from '../../../src/agent/ops/listen.js'

const rpcBody = (method: string, params: object = {}) => JSON.stringify({ jsonrpc: '2.0', method, params, id: 1 })

t.test('/healthz reports the pool: 200 ONLINE or DEGRADED (it still serves), 503 otherwise', async (t) => {
  const a = await startFakeAgent(t)
  let r = await req(a, 'GET', '/healthz')
  t.equal(r.status, 200)
  t.same(JSON.parse(r.body.toString()), { status: 'ok', pool: { name: 'tank', health: 'ONLINE' } })
  a.poolHealth = 'DEGRADED'
  r = await req(a, 'GET', '/healthz')
  t.equal(r.status, 200)
  t.same(JSON.parse(r.body.toString()), { status: 'degraded', pool: { name: 'tank', health: 'DEGRADED' } })
  a.poolHealth = 'FAULTED'
  r = await req(a, 'GET', '/healthz')
  t.equal(r.status, 503)
  t.same(JSON.parse(r.body.toString()), { status: 'unhealthy', pool: { name: 'tank', health: 'FAULTED' } })
  a.poolHealth = 'ERROR'
  r = await req(a, 'GET', '/healthz')
  t.equal(r.status, 503)
  t.equal(JSON.parse(r.body.toString()).status, 'error')
})

t.test('/healthz for a pool that is not there: 503 MISSING', async (t) => {
  const a = await startFakeAgent(t, { pool: 'other' })
  const r = await req(a, 'GET', '/healthz')
  t.equal(r.status, 503)
  t.same(JSON.parse(r.body.toString()).pool, { name: 'other', health: 'MISSING' })
})

t.test('/metrics: rpc counts and latency per method and outcome, queue, bytes sent', async (t) => {
  const metrics = createMetrics({ fetchQueue: () => ({ running: 2, waiting: 5 }) })
  const a = await startFakeAgent(t, { metrics })
  t.equal((await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('ListImages') })).status, 200)
  await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('ImageStore.GetImage', { id: 'nope' }) })
  await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('GetImage', { id: 'img1' }) })
  const dl = await req(a, 'GET', '/snapshots/download?id=guests/g1@s1')
  t.equal(dl.status, 200)
  t.equal(dl.body.length, STREAM.length)
  const r = await req(a, 'GET', '/metrics')
  t.equal(r.status, 200)
  t.match(r.headers['content-type'], /text\/plain/)
  const text = r.body.toString()
  t.match(text, /mistify_rpc_requests_total\{method="ListImages",outcome="ok"\} 1/)
  t.match(text, /mistify_rpc_requests_total\{method="GetImage",outcome="not_found"\} 1/)
  t.match(text, /mistify_rpc_requests_total\{method="GetImage",outcome="ok"\} 1/)
  t.match(text, /mistify_rpc_duration_seconds_count\{method="ListImages",outcome="ok"\} 1/)
  t.match(text, /mistify_fetch_queue\{state="running"\} 2/)
  t.match(text, /mistify_fetch_queue\{state="waiting"\} 5/)
  t.match(text, new RegExp(`mistify_download_bytes_total ${STREAM.length}\\b`))
})

t.test('one log line per RPC with request id, method, duration and outcome', async (t) => {
  const a = await startFakeAgent(t)
  const r = await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('GetImage', { id: 'nope' }), headers: { 'X-Request-Id': 'abc-123' } })
  t.equal(r.headers['x-request-id'], 'abc-123', 'a plain client id is echoed')
  const lines = a.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'rpc')
  t.equal(lines.length, 1)
  t.match(lines[0], { level: 'info', reqId: 'abc-123', method: 'GetImage', outcome: 'not_found', durationMs: Number })
  t.type(lines[0].time, 'string')
})

t.test('request ids: generated when absent or unfit, on every response', async (t) => {
  const a = await startFakeAgent(t)
  const r1 = await req(a, 'GET', '/healthz')
  const r2 = await req(a, 'GET', '/healthz')
  t.match(r1.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  t.not(r1.headers['x-request-id'], r2.headers['x-request-id'])
  const r3 = await req(a, 'GET', '/nowhere', { headers: { 'X-Request-Id': 'bad id with spaces' } })
  t.equal(r3.status, 404)
  t.match(r3.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const dl = await req(a, 'GET', '/snapshots/download?id=guests/g1@s1', { headers: { 'X-Request-Id': 'dl-1' } })
  t.equal(dl.headers['x-request-id'], 'dl-1', 'the raw download response carries it too')
})

t.test('token: 401 without it on every route but /healthz; never logged', async (t) => {
  const token = 's3cr3t-T0ken-value'
  const a = await startFakeAgent(t, { token, metrics: createMetrics() })
  for (const [method, path] of [['POST', '/_mistify_RPC_'], ['GET', '/metrics'], ['GET', '/snapshots/download?id=a@b'], ['GET', '/nowhere']] as const) {
    const r = await req(a, method, path, method === 'POST' ? { body: rpcBody('ListImages') } : {})
    t.equal(r.status, 401, `${method} ${path} without a token`)
    t.match(r.headers['content-type'], /^text\/plain/)
    t.match(r.headers['www-authenticate'], /^Bearer/)
    const bad = await req(a, method, path, { headers: { Authorization: `Bearer ${token}x` } })
    t.equal(bad.status, 401, `${method} ${path} with a wrong token`)
  }
  t.equal((await req(a, 'GET', '/healthz')).status, 200, '/healthz is open')
  const ok = await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('ListImages'), headers: { Authorization: `Bearer ${token}` } })
  t.equal(ok.status, 200)
  t.equal((await req(a, 'GET', '/metrics', { headers: { Authorization: `bearer ${token}` } })).status, 200, 'scheme is case-insensitive')
  t.equal((await req(a, 'GET', '/snapshots/download?id=guests/g1@s1', { headers: { Authorization: `Bearer ${token}` } })).status, 200)
  t.ok(a.logs.some((l) => JSON.parse(l).msg === 'rpc'), 'calls were logged')
  for (const l of a.logs) t.notMatch(l, token, 'no log line holds the token')
})

t.test('the logger redacts token and authorization fields', async (t) => {
  const a = await startFakeAgent(t)
  const { jsonLogger } = await import('../../../src/common/log.js')
  const out: string[] = []
  const { Writable } = await import('node:stream')
  const log = jsonLogger(new Writable({ write(c: Buffer, _e, cb) { out.push(c.toString()); cb() } }))
  log.info({ token: 'abc123xyz', config: { token: 'abc123xyz' }, headers: { authorization: 'Bearer abc123xyz' } }, 'started')
  t.equal(out.length, 1)
  t.notMatch(out[0], 'abc123xyz')
  t.match(JSON.parse(out[0]!), { msg: 'started', level: 'info', token: '[redacted]' })
  t.ok(a)
})

t.test('unix socket: stale file removed, mode 0660, served; a live socket or a plain file refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mistify-sock-'))
  const path = join(dir, 'agent.sock')
  // A stale socket: its process was killed and could not unlink it.
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
  await once(child.stdout!, 'data')
  child.kill('SIGKILL')
  await once(child, 'exit')
  t.ok(statSync(path).isSocket(), 'a stale socket file is there')
  const a = await startFakeAgent(t, {}, { listen: (s) => listen(s, { socket: path }) })
  t.equal(statSync(path).mode & 0o777, SOCKET_MODE)
  const r = await req({ url: 'http://localhost', socket: path }, 'GET', '/healthz')
  t.equal(r.status, 200)
  t.ok(a)
  // Live socket: a second listener is refused.
  const second = http.createServer()
  await t.rejects(listen(second, { socket: path }), ListenError)
  await t.rejects(listen(second, { socket: path }), { message: /another process is listening/ })
  const plain = join(dir, 'plain')
  writeFileSync(plain, 'x')
  await t.rejects(listen(http.createServer(), { socket: plain }), { message: /not a socket/ })
})

t.test('routes: 405 and Allow come from the router, each path with its own body; the token still goes first', async (t) => {
  const a = await startFakeAgent(t)
  let r = await req(a, 'GET', '/_mistify_RPC_')
  t.equal(r.status, 405)
  t.equal(r.headers.allow, 'POST')
  t.equal(r.body.toString(), 'rpc: POST method required, received GET', "gorilla's text on the RPC path")
  t.match(r.headers['content-type'], /^text\/plain/)
  r = await req(a, 'PUT', '/snapshots/download')
  t.equal(r.status, 405)
  t.equal(r.headers.allow, 'HEAD, GET, POST')
  t.equal(r.body.toString(), 'method PUT not allowed here; allowed: HEAD, GET, POST\n')
  r = await req(a, 'POST', '/healthz')
  t.equal(r.status, 405)
  t.equal(r.headers.allow, 'HEAD, GET')
  r = await req(a, 'GET', '/no/such/route')
  t.equal(r.status, 404)
  r = await req(a, 'OPTIONS', '/_mistify_RPC_')
  t.equal(r.status, 405, 'OPTIONS too, as gorilla answered it')
  t.equal(r.body.toString(), 'rpc: POST method required, received OPTIONS')
  for (const path of ['/_MISTIFY_RPC_', '/_mistify_RPC_/', '/healthz/']) {
    r = await req(a, 'POST', path, { body: rpcBody('ListImages') })
    t.equal(r.status, 404, `${path}: paths match exactly, as the original's`)
  }
  t.same(a.calls, [], 'no method ran')

  const locked = await startFakeAgent(t, { token: 'sekrit-token-1234' })
  r = await req(locked, 'GET', '/_mistify_RPC_')
  t.equal(r.status, 401, 'a client without the token learns nothing of the routes')
  r = await req(locked, 'GET', '/_mistify_RPC_', { headers: { Authorization: 'Bearer sekrit-token-1234' } })
  t.equal(r.status, 405)
})

t.test('/metrics counts HTTP requests by the route they matched and their status, refusals and streams included', async (t) => {
  const metrics = createMetrics()
  const a = await startFakeAgent(t, { metrics, token: 'sekrit-token-1234' })
  const auth = { Authorization: 'Bearer sekrit-token-1234' }
  t.equal((await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('ListImages'), headers: auth })).status, 200)
  t.equal((await req(a, 'POST', '/_mistify_RPC_', { body: rpcBody('ListImages') })).status, 401)
  t.equal((await req(a, 'GET', '/elsewhere', { headers: auth })).status, 404)
  t.equal((await req(a, 'GET', '/snapshots/download?id=guests/g1@s1', { headers: auth })).status, 200)
  t.equal((await req(a, 'GET', '/healthz')).status, 200)
  const text = (await req(a, 'GET', '/metrics', { headers: auth })).body.toString()
  t.match(text, /mistify_http_requests_total\{route="\/_mistify_RPC_",status="200"\} 1/)
  t.match(text, /mistify_http_requests_total\{route="unmatched",status="401"\} 1/)
  t.match(text, /mistify_http_requests_total\{route="unmatched",status="404"\} 1/)
  t.match(text, /mistify_http_requests_total\{route="\/snapshots\/download",status="200"\} 1/)
  t.match(text, /mistify_http_requests_total\{route="\/healthz",status="200"\} 1/)
})
