/**
 * The RPC fast path (src/agent/http/fast-rpc.ts): which requests it takes,
 * and that what it sends is byte for byte what the Koa route sends.
 */
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { fastRpc } from '../../../src/agent/http/fast-rpc.js'
import { createRpcServer } from '../../../src/agent/rpc/server.js'
import { createMetrics } from '../../../src/agent/ops/metrics.js'
import { createApp } from '../../../src/agent/http/app.js'
import { silentLogger } from '../../../src/common/log.js'
import { fakeServices, fakeZfs, IMAGE, req, startFakeAgent, type Res } from './fake-agent.js'

const JSON_TYPE = { 'Content-Type': 'application/json' }

t.test('it takes only a POST to the exact path with an allowed Host and the token; Koa gets the rest', async (t) => {
  const token = 'fast-path-token'
  const calls: Array<{ method: string; params: unknown }> = []
  const rpc = createRpcServer(fakeServices({ calls, cutNextDownload: false }))
  const fast = fastRpc({ rpc, token, allowedHosts: [], log: () => {} })
  const server = http.createServer((q, s) => { if (!fast(q, s)) { s.statusCode = 599; s.end('koa') } })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const body = JSON.stringify({ jsonrpc: '2.0', method: 'GetImage', params: { id: 'img1' }, id: 1 })
  const auth = { Authorization: `Bearer ${token}` }

  const taken = await req({ url }, 'POST', '/_mistify_RPC_', { headers: { ...JSON_TYPE, ...auth }, body })
  t.equal(taken.status, 200)
  t.match(JSON.parse(taken.body.toString()), { result: { images: [{ id: 'img1' }] }, id: 1 })
  t.match(taken.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const cases: Array<[string, string, { method?: string; headers?: Record<string, string> }]> = [
    ['no token', '/_mistify_RPC_', {}],
    ['a wrong token', '/_mistify_RPC_', { headers: { Authorization: `Bearer ${token}x` } }],
    ['a query string', '/_mistify_RPC_?x=1', { headers: auth }],
    ['a trailing slash', '/_mistify_RPC_/', { headers: auth }],
    ['another path', '/healthz', { headers: auth }],
    ['GET', '/_mistify_RPC_', { method: 'GET', headers: auth }],
    ['a rebound Host', '/_mistify_RPC_', { headers: { ...auth, Host: 'evil.example' } }],
  ]
  for (const [what, path, o] of cases) {
    const r = await req({ url }, o.method ?? 'POST', path, { headers: { ...JSON_TYPE, ...o.headers }, ...(o.method === 'GET' ? {} : { body }) })
    t.equal(r.status, 599, `${what}: left to Koa`)
  }
  t.equal(calls.length, 1, 'only the taken request ran a call')
})

t.test('the fast path and the Koa route send the same status, headers and body', async (t) => {
  const metrics = createMetrics()
  const a = await startFakeAgent(t, { metrics })
  const big = JSON.stringify({ jsonrpc: '2.0', method: 'GetImage', params: { id: 'x'.repeat(1024 * 1024) }, id: 1 })
  const bodies: Array<[string, string | Buffer, Record<string, string>?]> = [
    ['v2 call', JSON.stringify({ jsonrpc: '2.0', method: 'GetImage', params: { id: 'img1' }, id: 7 })],
    ['v2 error', JSON.stringify({ jsonrpc: '2.0', method: 'GetImage', params: { id: 'nope' }, id: 'a' })],
    ['v2 list', JSON.stringify({ jsonrpc: '2.0', method: 'ListImages', params: {}, id: 2 })],
    ['v2 notification (204)', JSON.stringify({ jsonrpc: '2.0', method: 'GetImage', params: { id: 'img1' } })],
    ['v2 batch', JSON.stringify([{ jsonrpc: '2.0', method: 'GetImage', params: { id: 'img1' }, id: 1 }, { jsonrpc: '2.0', method: 'Nope', id: 2 }])],
    ['v1 call', JSON.stringify({ method: 'ImageStore.GetImage', params: [{ id: 'img1' }], id: 3 })],
    ['v1 notification', JSON.stringify({ method: 'ImageStore.GetImage', params: [{ id: 'img1' }], id: null })],
    ['v1 unknown method', JSON.stringify({ method: 'ImageStore.Nope', params: [{}], id: 4 })],
    ['not JSON', '{"jsonrpc":'],
    ['empty', ''],
    ['a big number id', '{"jsonrpc":"2.0","method":"GetImage","params":{"id":"img1"},"id":123456789012345678901234567890}'],
    ['text/plain (415)', 'x', { 'Content-Type': 'text/plain' }],
    ['over the limit (413)', big],
  ]
  const drop = new Set(['date', 'x-request-id', 'keep-alive', 'connection'])
  const shape = (r: Res) => ({ status: r.status, headers: Object.fromEntries(Object.entries(r.headers).filter(([k]) => !drop.has(k))), body: r.body.toString('base64') })
  for (const [what, body, headers] of bodies) {
    const viaFast = await req(a, 'POST', '/_mistify_RPC_', { body, headers: { ...JSON_TYPE, ...headers, 'X-Request-Id': `fast-${what.length}` } })
    const viaKoa = await req(a, 'POST', '/_mistify_RPC_?via=koa', { body, headers: { ...JSON_TYPE, ...headers, 'X-Request-Id': `koa-${what.length}` } })
    t.same(shape(viaFast), shape(viaKoa), what)
    t.equal(viaFast.headers['x-request-id'], `fast-${what.length}`, `${what}: the client's request id`)
    if (what.includes('413')) t.equal(viaFast.headers.connection, 'close', '413 closes the connection')
  }
  const lines = a.logs.map((l) => JSON.parse(l) as { msg: string; reqId?: string })
  t.ok(lines.some((l) => l.msg === 'rpc' && l.reqId === 'fast-7'), 'the fast path logs its calls with their request ids')
  const counted = (await metrics.registry.getSingleMetricAsString('mistify_http_requests_total'))
  t.match(counted, /mistify_http_requests_total\{route="\/_mistify_RPC_",status="200"\} \d+/, 'fast-path requests are counted under the route')
  t.match(counted, /route="\/_mistify_RPC_",status="204"/)
})

t.test('a large answer (written as chunks, not joined) is the same both ways', async (t) => {
  const fake = fakeServices({ calls: [], cutNextDownload: false })
  const many = { images: Array.from({ length: 2000 }, (_, i) => ({ ...IMAGE, id: `img-${i}` })) }
  const services = { ...fake, images: { ...fake.images, listImages: async () => many } }
  const app = createApp({ services, zfs: fakeZfs({ poolHealth: 'ONLINE' }), log: silentLogger })
  const server = http.createServer(app.callback())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const body = JSON.stringify({ jsonrpc: '2.0', method: 'ListImages', params: {}, id: 9 })
  const viaFast = await req({ url }, 'POST', '/_mistify_RPC_', { headers: JSON_TYPE, body })
  const viaKoa = await req({ url }, 'POST', '/_mistify_RPC_?via=koa', { headers: JSON_TYPE, body })
  t.equal(viaFast.status, 200)
  t.ok(viaFast.body.length > 64 * 1024, `${viaFast.body.length} bytes`)
  t.equal(JSON.parse(viaFast.body.toString()).result.images.length, 2000)
  t.equal(viaFast.headers['content-length'], String(viaFast.body.length))
  t.ok(viaFast.body.equals(viaKoa.body), 'the same bytes')
  t.equal(viaFast.headers['content-type'], viaKoa.headers['content-type'])
  t.equal(viaFast.headers['content-length'], viaKoa.headers['content-length'])
})
