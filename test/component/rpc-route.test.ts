/**
 * rpcHandler on @koa/router in a real Koa app on 127.0.0.1:0, over a json-rpc-2.0 server with a
 * fake method table: the wire bytes of both dialects, every transport error, limits and abort.
 */
import t, { type Test } from 'tap'
import Koa from 'koa'
import Router from '@koa/router'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { rpcHandler, rpcMethodNotAllowed, RPC_PATH, type RpcRouteOptions } from '../../src/agent/http/rpc-route.js'
import { rpcServer, type RpcEvent } from '../../src/agent/rpc/server.js'
import type { MethodTable, RpcMethod } from '../../src/agent/rpc/method.js'
import { MAX_BATCH } from '../../src/agent/rpc/gorilla/protocol.js'
import { array, bool, int, map, str, struct, uint64, type StructSpec } from '../../src/agent/rpc/schema.js'
import { NotFoundError } from '../../src/agent/errors.js'
import { ZfsCommandError } from '../../src/zfs/errors.js'

// The real request structs, so these tests follow any change to them.
import { IMAGE_REQUEST as IMAGE, SNAPSHOT_REQUEST as SNAPSHOT, VOLUME_REQUEST as VOLUME, DISK, NIC, GUEST, GUEST_REQUEST } from '../../src/agent/rpc/requests.js'

const ZFS_TEXT = 'exit status 1: "/sbin/zfs zfs destroy pool/x" => cannot open \'pool/x\': dataset does not exist\n'

/** What the fake methods saw. */
const seen = { counts: new Map<string, number>(), signals: [] as AbortSignal[] }
let onSlowStart: () => void = () => {}
let onSlowAbort: (aborted: boolean) => void = () => {}

const fake = (params: StructSpec, f: (p: Record<string, unknown>, signal: AbortSignal) => Promise<unknown>, name: string): RpcMethod => ({
  params,
  call: (p, ctx) => {
    seen.counts.set(name, (seen.counts.get(name) ?? 0) + 1)
    seen.signals.push(ctx.signal)
    return f(p, ctx.signal)
  },
})

const METHODS: MethodTable = new Map<string, RpcMethod>([
  ['CloneImage', fake(IMAGE, async (p) => ({ got: p }), 'CloneImage')],
  ['CreateVolume', fake(VOLUME, async (p) => ({ volumes: [{ id: p.id, size: p.size, device: `/dev/zvol/${String(p.id)}` }] }), 'CreateVolume')],
  ['GetSnapshot', fake(SNAPSHOT, async (p) => ({ got: p }), 'GetSnapshot')],
  ['CreateGuestDisks', fake(GUEST_REQUEST, async (p) => ({ guest: p.guest }), 'CreateGuestDisks')],
  ['GetImage', fake(IMAGE, async () => { throw new NotFoundError() }, 'GetImage')],
  ['DeleteImage', fake(IMAGE, async () => { throw new Error('secret detail') }, 'DeleteImage')],
  ['DeleteDataset', fake(VOLUME, async () => { throw new ZfsCommandError(ZFS_TEXT) }, 'DeleteDataset')],
  ['DeleteGuestsDisks', fake(GUEST_REQUEST, async () => ({ called: 'DeleteGuestsDisks' }), 'DeleteGuestsDisks')],
  ['ListSnapshots', fake(SNAPSHOT, async () => ({ snapshots: [] }), 'ListSnapshots')],
  ['ListImages', fake(IMAGE, async () => ({ images: [{ id: '<b>&', type: '' }] }), 'ListImages')],
  ['ListVolumes', fake(VOLUME, async () => undefined, 'ListVolumes')],
  ['VerifyDisks', fake(GUEST_REQUEST, async () => ({ n: 10n }), 'VerifyDisks')],
  ['RequestImage', fake(IMAGE, (_p, signal) => new Promise((resolve) => {
    onSlowStart()
    signal.addEventListener('abort', () => { onSlowAbort(signal.aborted); resolve({}) }, { once: true })
  }), 'RequestImage')],
])

interface Server { url: string; host: string; port: number; logs: Array<{ obj: object; msg: string }>; events: RpcEvent[] }

/** Mounted as app.ts mounts it: POST on the router, any other method gorilla's 405. */
async function start(t: Test, opts: RpcRouteOptions = {}): Promise<Server> {
  const logs: Server['logs'] = []
  const events: RpcEvent[] = []
  const log = (obj: object, msg: string) => logs.push({ obj, msg })
  const app = new Koa()
  const router = new Router()
  router.post(RPC_PATH, rpcHandler(rpcServer(METHODS, { log, observe: (e) => events.push(e) }), { log, ...opts }))
  router.all(RPC_PATH, rpcMethodNotAllowed)
  app.use(async (ctx, next) => { ctx.state.requestId = ctx.get('X-Request-Id') || undefined; await next() })
  app.use(router.routes())
  app.use((ctx) => { ctx.status = 404; ctx.body = 'fell through' })
  app.on('error', (err: Error) => logs.push({ obj: { err }, msg: 'koa error' }))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}${RPC_PATH}`, host: '127.0.0.1', port, logs, events }
}

interface Reply { status: number; text: string; type: string | null; nosniff: string | null }

async function post(url: string, body: string | Uint8Array<ArrayBuffer>, contentType: string | null = 'application/json', method = 'POST'): Promise<Reply> {
  const headers: Record<string, string> = contentType === null ? {} : { 'Content-Type': contentType }
  // A Blob without a type: fetch then sends no Content-Type at all.
  const init: RequestInit = { method, headers }
  if (method !== 'GET' && method !== 'HEAD') init.body = typeof body === 'string' ? body : new Blob([body])
  const res = await fetch(url, init)
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type'), nosniff: res.headers.get('x-content-type-options') }
}

const call1 = (method: string, params: unknown, id: string) => `{"method":${JSON.stringify(method)},"params":[${JSON.stringify(params)}],"id":${id}}`

t.test('only its own path', async (t) => {
  const s = await start(t)
  const res = await fetch(`http://127.0.0.1:${s.port}/other`, { method: 'POST', body: '{}' })
  t.equal(res.status, 404)
  t.equal(await res.text(), 'fell through')
  const sub = await fetch(`${s.url}/x`, { method: 'POST', body: '{}' })
  t.equal(await sub.text(), 'fell through')
})

t.test('1.0 transport errors: gorilla texts and statuses, plain text', async (t) => {
  const s = await start(t)
  const ran = seen.signals.length
  const plain = 'text/plain; charset=utf-8'
  t.same(await post(s.url, '', 'application/json', 'GET'), { status: 405, text: 'rpc: POST method required, received GET', type: plain, nosniff: null })
  t.same(await post(s.url, '{}', 'application/json', 'PUT'), { status: 405, text: 'rpc: POST method required, received PUT', type: plain, nosniff: null })
  t.equal((await post(s.url, '', 'application/json', 'HEAD')).status, 405)
  t.same(await post(s.url, '{}', 'text/plain'), { status: 415, text: 'rpc: unrecognized Content-Type: text/plain', type: plain, nosniff: null })
  t.same(await post(s.url, '{}', 'Text/Plain; charset=UTF-8'), { status: 415, text: 'rpc: unrecognized Content-Type: Text/Plain', type: plain, nosniff: null })
  t.same(await post(s.url, new TextEncoder().encode('{}'), null), { status: 415, text: 'rpc: unrecognized Content-Type: ', type: plain, nosniff: null })
  const cases: Array<[string, string]> = [
    ['', 'EOF'],
    ['   ', 'EOF'],
    ['abc', "invalid character 'a' looking for beginning of value"],
    ['{"method":"ImageStore.CloneImage",', 'unexpected EOF'],
    ['{"method":"ImageStore.CloneImage","id":1}', 'rpc: method request ill-formed: missing params field'],
    ['{"method":"CloneImage.x.y","params":[{}],"id":1}', 'rpc: service/method request ill-formed: "CloneImage.x.y"'],
    ['{"method":"Storage.CloneImage","params":[{}],"id":1}', 'rpc: can\'t find service "Storage.CloneImage"'],
    ['{"method":"ImageStore.Clone","params":[{}],"id":1}', 'rpc: can\'t find method "ImageStore.Clone"'],
    ['{"method":"ImageStore.cloneimage","params":[{}],"id":1}', 'rpc: can\'t find method "ImageStore.cloneimage"'],
    ['{"method":"ImageStore.CloneImage","params":{"id":"x"},"id":1}', 'json: cannot unmarshal object into Go value of type [1]interface {}'],
    [call1('ImageStore.CreateVolume', { id: 'v', size: '64' }, '1'), 'json: cannot unmarshal string into Go value of type uint64'],
    ['{"method":"ImageStore.CreateVolume","params":[{"size":-1}],"id":1}', 'json: cannot unmarshal number -1 into Go value of type uint64'],
    ['{"method":"ImageStore.CreateVolume","params":[{"size":1.5}],"id":1}', 'json: cannot unmarshal number 1.5 into Go value of type uint64'],
    ['{"method":"ImageStore.CreateVolume","params":[{"size":1e10}],"id":1}', 'json: cannot unmarshal number 1e10 into Go value of type uint64'],
    ['{"method":"ImageStore.CreateGuestDisks","params":[{"guest":{"disks":{}}}],"id":1}', 'json: cannot unmarshal object into Go value of type []client.Disk'],
    ['"hello"', 'json: cannot unmarshal string into Go value of type json.serverRequest'],
  ]
  for (const [body, text] of cases) t.same(await post(s.url, body), { status: 400, text, type: plain, nosniff: null }, body)
  t.equal(seen.signals.length, ran, 'nothing ran')
})

t.test('1.0 success: exact bytes, headers, raw id echo', async (t) => {
  const s = await start(t)
  const r = await post(s.url, call1('ImageStore.CreateVolume', { id: 'guests/a/disk-0', size: 64 }, '42'), 'application/json; charset=UTF-8')
  t.same(r, {
    status: 200,
    text: '{"result":{"volumes":[{"id":"guests/a/disk-0","size":64,"device":"/dev/zvol/guests/a/disk-0"}]},"error":null,"id":42}\n',
    type: 'application/json; charset=utf-8',
    nosniff: 'nosniff',
  })
  for (const id of ['9007199254740993', '18446744073709551615', '0', '"abc"', '1.5']) {
    const res = await post(s.url, call1('ListSnapshots', {}, id), 'APPLICATION/JSON')
    t.equal(res.text, `{"result":{"snapshots":[]},"error":null,"id":${id}}\n`, `id ${id}`)
  }
  const spaced = await post(s.url, '{"method":"ListSnapshots","params":[{}],"id": [ 1 , "<" ] }')
  t.equal(spaced.text, '{"result":{"snapshots":[]},"error":null,"id":[1,"\\u003c"]}\n', 'the id is compacted like a Go RawMessage')
  const html = await post(s.url, call1('ListImages', {}, '1'))
  t.equal(html.text, '{"result":{"images":[{"id":"\\u003cb\\u003e\\u0026","type":""}]},"error":null,"id":1}\n')
  const undef = await post(s.url, call1('ListVolumes', {}, '1'))
  t.equal(undef.text, '{"result":null,"error":null,"id":1}\n')
  const tail = await post(s.url, `${call1('ListSnapshots', {}, '5')}\n{"ignored": tru`)
  t.equal(tail.text, '{"result":{"snapshots":[]},"error":null,"id":5}\n', 'content after the first value is ignored')
})

t.test('1.0 method errors: a bare string, HTTP 200', async (t) => {
  const s = await start(t)
  t.same(await post(s.url, call1('ImageStore.GetImage', { id: 'nope' }, '7')), {
    status: 200, text: '{"result":null,"error":"not found","id":7}\n', type: 'application/json; charset=utf-8', nosniff: 'nosniff',
  })
  const zfs = await post(s.url, call1('ImageStore.DeleteDataset', { id: 'x' }, '8'))
  t.equal(zfs.text,
    '{"result":null,"error":"exit status 1: \\"/sbin/zfs zfs destroy pool/x\\" =\\u003e cannot open \'pool/x\': dataset does not exist\\n","id":8}\n',
    'our own error text, as the original sent it (Go escapes > as \\u003e)')
  const boom = await post(s.url, call1('ImageStore.DeleteImage', { id: 'x' }, '9'))
  t.equal(boom.text, '{"result":null,"error":"internal error","id":9}\n', 'a stray exception is not shown')
  const bad = await post(s.url, call1('ImageStore.VerifyDisks', {}, '10'))
  t.equal(bad.text, '{"result":null,"error":"internal error","id":10}\n', 'an unserialisable result is an error too')
  t.equal(s.logs.length, 3, 'the internal ones are logged')
  t.same(s.logs.map((l) => [l.msg, (l.obj as { method: string }).method]), [
    ['rpc method failed', 'DeleteDataset'], ['rpc method failed', 'DeleteImage'], ['rpc method failed', 'VerifyDisks'],
  ])
  t.equal(((s.logs[1]!.obj as { err: Error }).err).message, 'secret detail')
})

t.test('1.0 notifications: the method runs, the body is empty', async (t) => {
  const s = await start(t)
  const before = seen.counts.get('CloneImage') ?? 0
  const a = await post(s.url, '{"method":"ImageStore.CloneImage","params":[{"id":"a"}]}')
  const b = await post(s.url, '{"method":"ImageStore.CloneImage","params":[{"id":"a"}],"id":null}')
  for (const r of [a, b]) {
    t.equal(r.status, 200)
    t.equal(r.text, '')
    t.equal(r.nosniff, 'nosniff')
  }
  t.equal(seen.counts.get('CloneImage'), before + 2)
  const failing = await post(s.url, '{"method":"GetImage","params":[{}]}')
  t.same([failing.status, failing.text], [200, ''], 'an error in a notification is not reported either')
})

t.test('names: prefix or bare, aliases, case-insensitive keys', async (t) => {
  const s = await start(t)
  for (const m of ['ImageStore.DeleteGuestDisks', 'DeleteGuestDisks', 'ImageStore.DeleteGuestsDisks', 'DeleteGuestsDisks']) {
    t.equal((await post(s.url, call1(m, {}, '1'))).text, '{"result":{"called":"DeleteGuestsDisks"},"error":null,"id":1}\n', m)
  }
  t.equal((await post(s.url, call1('ImageStore.ListSnapshot', {}, '2'))).text, '{"result":{"snapshots":[]},"error":null,"id":2}\n')
  t.equal((await post(s.url, call1('ListSnapshot', {}, '2'))).text, '{"result":{"snapshots":[]},"error":null,"id":2}\n')
  const folded = await post(s.url, '{"Method":"ImageStore.GetSnapshot","PARAMS":[{"ID":"pool@s","Recursive":true,"DESTROYMORERECENT":true,"extra":1}],"Id":3}')
  t.equal(folded.text, '{"result":{"got":{"id":"pool@s","dest":"","recursive":true,"destroyMoreRecent":true}},"error":null,"id":3}\n')
})

t.test('nested guest structs over the wire', async (t) => {
  const s = await start(t)
  const body = call1('ImageStore.CreateGuestDisks', {
    guest: { id: 'g', Disks: [{ size: 64, image: 'img' }], nics: [{ mac: 'aa', vlans: [1] }], metadata: { k: 'v' }, bogus: true },
    action: 'create',
  }, '1')
  const r = await post(s.url, body)
  t.equal(r.status, 200)
  t.same(JSON.parse(r.text), {
    result: {
      guest: {
        id: 'g', type: '', image: '',
        nics: [{ name: '', network: '', model: '', mac: 'aa', address: '', netmask: '', gateway: '', device: '', vlans: [1] }],
        disks: [{ bus: '', device: '', size: 64, volume: '', image: 'img', source: '' }],
        state: '', memory: 0, cpu: 0, vnc: 0, metadata: { k: 'v' },
      },
    },
    error: null,
    id: 1,
  })
  const nil = await post(s.url, call1('CreateGuestDisks', { guest: null }, '2'))
  t.equal(nil.text, '{"result":{"guest":null},"error":null,"id":2}\n')
})

t.test('2.0: results, error objects, notifications, batches', async (t) => {
  const s = await start(t)
  const json = 'application/json; charset=utf-8'
  t.same(await post(s.url, '{"jsonrpc":"2.0","method":"ImageStore.ListSnapshots","params":[{}],"id":18446744073709551615}'), {
    status: 200, text: '{"jsonrpc":"2.0","result":{"snapshots":[]},"id":18446744073709551615}\n', type: json, nosniff: 'nosniff',
  })
  t.equal((await post(s.url, '{"jsonrpc":"2.0","method":"CreateVolume","params":{"Id":"v","size":1},"id":"a"}', 'application/json-rpc')).text,
    '{"jsonrpc":"2.0","result":{"volumes":[{"id":"v","size":1,"device":"/dev/zvol/v"}]},"id":"a"}\n', 'params as an object; application/json-rpc')
  t.equal((await post(s.url, '{"jsonrpc":"2.0","method":"GetImage","params":{},"id":1}')).text,
    '{"jsonrpc":"2.0","error":{"code":-32004,"message":"not found","data":{"code":"not_found"}},"id":1}\n')
  const internal = JSON.parse((await post(s.url, '{"jsonrpc":"2.0","method":"DeleteImage","params":{},"id":2}')).text)
  t.same(internal.error.code, -32603)
  t.same(internal.error.message, 'Internal error')
  t.match(internal.error.data.ref, /^[0-9a-f-]{36}$/)
  t.equal((s.logs.at(-1)!.obj as { ref: string }).ref, internal.error.data.ref, 'the log line carries the same ref')
  t.equal((await post(s.url, '{"jsonrpc":"2.0","method":"Nope","id":3}')).text,
    '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found: \\"Nope\\""},"id":3}\n')
  t.equal((await post(s.url, '{"jsonrpc":"2.0","method":"CreateVolume","params":{"size":"1"},"id":4}')).text,
    '{"jsonrpc":"2.0","error":{"code":-32602,"message":"json: cannot unmarshal string into Go value of type uint64"},"id":4}\n')
  t.equal((await post(s.url, '{"jsonrpc":"2.0","method":')).text,
    '{"jsonrpc":"2.0","error":{"code":-32700,"message":"unexpected EOF"},"id":null}\n')
  t.equal((await post(s.url, '[]')).text, '{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request: empty batch"},"id":null}\n')

  const before = seen.counts.get('CloneImage') ?? 0
  const note = await post(s.url, '{"jsonrpc":"2.0","method":"CloneImage","params":{}}')
  t.same([note.status, note.text], [204, ''], 'a notification: no content')
  const batch = await post(s.url, `[
    {"jsonrpc":"2.0","method":"ListSnapshots","id":1},
    {"jsonrpc":"2.0","method":"CloneImage","params":{"id":"n"}},
    {"jsonrpc":"2.0","method":"GetImage","id":"x"},
    {"jsonrpc":"2.0","method":"DeleteGuestDisks","params":[{}],"id":2},
    7
  ]`)
  t.equal(batch.status, 200)
  t.equal(batch.text, '[' + [
    '{"jsonrpc":"2.0","result":{"snapshots":[]},"id":1}',
    '{"jsonrpc":"2.0","error":{"code":-32004,"message":"not found","data":{"code":"not_found"}},"id":"x"}',
    '{"jsonrpc":"2.0","result":{"called":"DeleteGuestsDisks"},"id":2}',
    '{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request: not an object"},"id":null}',
  ].join(',') + ']\n')
  const quiet = await post(s.url, '[{"jsonrpc":"2.0","method":"CloneImage"},{"jsonrpc":"2.0","method":"GetImage"}]')
  t.same([quiet.status, quiet.text], [204, ''], 'a batch of notifications: no content')
  t.equal(seen.counts.get('CloneImage'), before + 3, 'notifications ran')
  const ct = await post(s.url, call1('ListSnapshots', {}, '1'), 'application/json-rpc')
  t.same([ct.status, ct.text], [415, 'rpc: unrecognized Content-Type: application/json-rpc'], 'a 1.0 body needs application/json')
})

t.test('body size limit', async (t) => {
  const s = await start(t, { maxBodyBytes: 64 })
  const small = call1('ListSnapshots', {}, '1')
  t.ok(small.length <= 64)
  t.equal((await post(s.url, small)).status, 200)
  const big = call1('CloneImage', { id: 'x'.repeat(100) }, '1')
  t.same(await post(s.url, big), { status: 413, text: 'rpc: request body larger than 64 bytes', type: 'text/plain; charset=utf-8', nosniff: null })

  // No Content-Length: the limit is enforced while reading.
  const chunked = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request({ host: s.host, port: s.port, path: RPC_PATH, method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.write('{"method":"CloneImage","params":[{"id":"')
    req.write('y'.repeat(40))
    req.end('"}],"id":1}')
  })
  t.same(chunked, { status: 413, text: 'rpc: request body larger than 64 bytes' })

  const dflt = await start(t)
  const mib = await post(dflt.url, call1('CloneImage', { id: 'z'.repeat(1024 * 1024) }, '1'))
  t.equal(mib.status, 413, 'default limit 1 MiB')
  t.equal(mib.text, 'rpc: request body larger than 1048576 bytes')
})

t.test('client abort → ctx.signal aborted; a finished call is not', async (t) => {
  const s = await start(t)
  const started = new Promise<void>((resolve) => { onSlowStart = resolve })
  const aborted = new Promise<boolean>((resolve) => { onSlowAbort = resolve })
  const req = http.request({ host: s.host, port: s.port, path: RPC_PATH, method: 'POST', headers: { 'Content-Type': 'application/json' } })
  req.on('error', () => {}) // we are the ones hanging up
  req.end(call1('ImageStore.RequestImage', { id: 'img' }, '1'))
  await started
  req.destroy()
  t.equal(await aborted, true, 'the method saw the abort')

  const n = seen.signals.length
  const done = await post(s.url, call1('ListSnapshots', {}, '1'))
  t.equal(done.status, 200)
  const signal = seen.signals[n]!
  await new Promise((r) => setTimeout(r, 50))
  t.equal(signal.aborted, false, 'a call whose response was written is not aborted')
})

t.test('item 12: a batch over the cap runs nothing and gets one -32600', async (t) => {
  const s = await start(t)
  const v2call = (i: number) => `{"jsonrpc":"2.0","method":"CloneImage","params":{"id":"i${i}"},"id":${i}}`
  const before = seen.counts.get('CloneImage') ?? 0
  const r = await post(s.url, `[${Array.from({ length: MAX_BATCH + 1 }, (_, i) => v2call(i)).join(',')}]`)
  t.equal(r.status, 200)
  t.same(JSON.parse(r.text), {
    jsonrpc: '2.0', id: null,
    error: { code: -32600, message: `Invalid Request: a batch of ${MAX_BATCH + 1} calls, more than the limit of ${MAX_BATCH}` },
  })
  t.equal(seen.counts.get('CloneImage') ?? 0, before, 'not one call ran')
  const ok = await post(s.url, `[${Array.from({ length: MAX_BATCH }, (_, i) => v2call(i)).join(',')}]`)
  t.equal(JSON.parse(ok.text).length, MAX_BATCH, `a batch of ${MAX_BATCH} runs whole`)
  t.equal(seen.counts.get('CloneImage'), before + MAX_BATCH)
})

t.test('item 12: a batch whose client goes away starts no further calls', async (t) => {
  const s = await start(t)
  const started = new Promise<void>((resolve) => { onSlowStart = resolve })
  const aborted = new Promise<boolean>((resolve) => { onSlowAbort = resolve })
  const before = seen.counts.get('CloneImage') ?? 0
  const batch = [
    '{"jsonrpc":"2.0","method":"RequestImage","params":{"id":"img"},"id":0}',
    ...Array.from({ length: 20 }, (_, i) => `{"jsonrpc":"2.0","method":"CloneImage","params":{"id":"c${i}"},"id":${i + 1}}`),
  ]
  const req = http.request({ host: s.host, port: s.port, path: RPC_PATH, method: 'POST', headers: { 'Content-Type': 'application/json' } })
  req.on('error', () => {}) // we are the ones hanging up
  req.end(`[${batch.join(',')}]`)
  await started
  req.destroy()
  t.equal(await aborted, true, 'the running call saw the abort')
  await new Promise((r) => setTimeout(r, 100)) // time for the route to run on, if it would
  t.equal(seen.counts.get('CloneImage') ?? 0, before, 'none of the 20 calls after it started')
  t.ok(s.logs.some((l) => l.msg === 'rpc batch cut short: the client went away' && (l.obj as { started: number }).started === 1), 'and the route said so')
})

t.test('each call observed once: canonical name, outcome, request id; transport errors are not calls', async (t) => {
  const s = await start(t)
  const res = await fetch(s.url, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'req-1' },
    body: `[${['ListSnapshot', 'GetImage', 'DeleteImage', 'VerifyDisks'].map((m, i) => `{"jsonrpc":"2.0","method":"${m}","id":${i}}`).join(',')}]`,
  })
  t.equal(res.status, 200)
  t.same(s.events.map((e) => [e.method, e.outcome, e.requestId]), [
    ['ListSnapshots', 'ok', 'req-1'], ['GetImage', 'not_found', 'req-1'], ['DeleteImage', 'internal', 'req-1'],
    ['VerifyDisks', 'ok', 'req-1'], // it ran; only its result could not be encoded
  ])
  t.ok(s.events.every((e) => typeof e.durationMs === 'number' && e.durationMs >= 0))
  await post(s.url, call1('DeleteDataset', {}, '1'))
  t.same(s.events.at(-1), { ...s.events.at(-1), method: 'DeleteDataset', outcome: 'zfs_other', requestId: undefined })
  const n = s.events.length
  await post(s.url, call1('CreateVolume', { size: '1' }, '1'))
  await post(s.url, '{"jsonrpc":"2.0","method":"Nope","id":1}')
  t.equal(s.events.length, n, 'a request refused before the call is not observed')
})
