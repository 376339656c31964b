/**
 * The download route over real child processes standing in for `zfs send`
 * (spawned through the one process runner, as zfs is), writing straight into
 * the client's socket: whole and counted, reset on failure, killed when the
 * client goes or stops reading, over TCP and a unix socket.
 */
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import Koa from 'koa'
import { createZfsRunner } from '../../../src/zfs/runner.js'
import { instrumentRunner } from '../../../src/agent/ops/zfs-metrics.js'
import { createMetrics } from '../../../src/agent/ops/metrics.js'
import type { Child } from '../../../src/common/exec.js'
import { snapshotDownload, fromQuery } from '../../../src/agent/http/snapshot-download.js'
import { silentLogger, type Logger } from '../../../src/common/log.js'
import type { Lease } from '../../../src/agent/services/downloads.js'

interface Seen { counted: number; released: number; stdout: Array<'pipe' | number> }

function app(argv: [string, ...string[]], seen: Seen, o: { idleTimeoutMs?: number; log?: Logger } = {}): Koa {
  const downloads = {
    ...(o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.idleTimeoutMs }),
    async describe() { return { snapshot: 'tank/guests/g@s', kind: 'full' as const, estimate: undefined } },
    async open(): Promise<Lease> {
      let child: Child | undefined
      let done: Promise<void> | undefined
      return {
        snapshot: 'tank/guests/g@s', kind: 'full', estimate: undefined,
        start(stdout) {
          seen.stdout.push(stdout)
          // Through the runner the agent uses (metrics wrapper included): the final count needs the child's stderr.
          child = instrumentRunner(createZfsRunner({ zfsBin: argv[0] }), createMetrics({ defaultMetrics: false })).spawn('zfs', argv.slice(1), { stdout })
          return child
        },
        // As the real lease: kill, wait for the child to be gone, then drop the hold.
        release: () => (done ??= (async () => { child?.kill(); await child?.done.catch(() => {}); seen.released++ })()),
      }
    },
  }
  const a = new Koa()
  a.use(snapshotDownload({ downloads, log: o.log ?? silentLogger, onSentBytes: (n) => { seen.counted += n } }, fromQuery))
  return a
}

async function serve(t: { teardown(fn: () => void): void }, a: Koa, at?: string): Promise<http.Server> {
  const server = http.createServer(a.callback())
  if (at) server.listen(at)
  else server.listen(0, '127.0.0.1')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  await once(server, 'listening')
  return server
}
const urlOf = (s: http.Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/?id=guests/g@s`

/** A GET read to its end (or its error): status, headers, bytes, and how it ended. */
function get(o: http.RequestOptions | URL, slow = false): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number; error?: string }> {
  return new Promise((resolve) => {
    let error: string | undefined
    let responded = false
    // Node reports a reset after the head on the request (and may end the response as if whole).
    const req = http.get(o, (res) => {
      responded = true
      let bytes = 0
      res.on('data', (c: Buffer) => {
        bytes += c.length
        if (slow) { res.pause(); setTimeout(() => res.resume(), 1) }
      })
      res.on('error', (e) => { error ??= e.message })
      res.on('close', () => setImmediate(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, ...(error !== undefined || !res.complete ? { error: error ?? 'incomplete' } : {}) })))
    })
    req.on('error', (e) => { error ??= e.message; if (!responded) resolve({ status: 0, headers: {}, bytes: 0, error }) })
  })
}

async function until(what: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!what() && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
  return what()
}

const fresh = (): Seen => ({ counted: 0, released: 0, stdout: [] })

t.test('a whole stream: close-delimited, every byte written by the child itself, counted exactly, lease released', async (t) => {
  const seen = fresh()
  const size = 5_000_000
  const s = await serve(t, app(['head', '-c', String(size), '/dev/zero'], seen))
  const r = await get(new URL(urlOf(s)), true)
  t.equal(r.status, 200)
  t.equal(r.error, undefined, 'a clean end')
  t.equal(r.bytes, size)
  t.equal(r.headers.connection, 'close')
  t.equal(r.headers['transfer-encoding'], undefined, 'no chunk framing')
  t.equal(r.headers['content-length'], undefined)
  t.equal(r.headers['x-send-kind'], 'full')
  t.ok(typeof seen.stdout[0] === 'number', `the child was given the socket (stdout ${seen.stdout[0]})`)
  t.ok(await until(() => seen.released === 1, 5000), 'released')
  t.equal(seen.counted, size, 'counted exactly, from the child\'s own write counter')
})

t.test('a unix socket has no reset: there the bytes go through the agent, chunked, and a failure leaves the body unterminated', async (t) => {
  const size = 3_000_000
  const sock = join(mkdtempSync(join(tmpdir(), 'mistify-dl-')), 'a.sock')
  const seen = fresh()
  await serve(t, app(['head', '-c', String(size), '/dev/zero'], seen), sock)
  const r = await get({ socketPath: sock, path: '/?id=guests/g@s' })
  t.equal(r.status, 200)
  t.equal(r.error, undefined)
  t.equal(r.bytes, size)
  t.equal(r.headers['transfer-encoding'], 'chunked')
  t.same(seen.stdout, ['pipe'], 'the child wrote into a pipe')
  t.ok(await until(() => seen.released === 1, 5000), 'released')
  t.equal(seen.counted, size)

  const failing = fresh()
  const sock2 = join(mkdtempSync(join(tmpdir(), 'mistify-dl-')), 'b.sock')
  const script = 'require("fs").writeSync(1, Buffer.alloc(1 << 20, 1)); setTimeout(() => process.exit(3), 200)'
  await serve(t, app([process.execPath, '-e', script], failing), sock2)
  const f = await get({ socketPath: sock2, path: '/?id=guests/g@s' })
  t.equal(f.status, 200)
  t.ok(f.bytes > 0, `bytes arrived first (${f.bytes})`)
  t.ok(f.error, `then an error, not a clean end (${f.error})`)
  t.ok(await until(() => failing.released === 1, 5000), 'released')
})

t.test('a child that fails after bytes went out: the connection is reset, the client sees an error', async (t) => {
  const seen = fresh()
  // Bytes, time for the client to read them (a reset drops what its kernel still holds), then a failure.
  const script = 'require("fs").writeSync(1, Buffer.alloc(1 << 20, 1)); setTimeout(() => process.exit(3), 300)'
  const s = await serve(t, app([process.execPath, '-e', script], seen))
  const r = await get(new URL(urlOf(s)))
  t.equal(r.status, 200)
  t.equal(r.bytes, 1 << 20, 'the bytes went out')
  t.ok(r.error, `then an error, never a clean end (${r.error})`)
  t.ok(await until(() => seen.released === 1, 5000), 'released')

  // head complains on stderr, then writes 1 MiB, then exits 1: the count is the stream, not the message.
  const counted = fresh()
  const h = await serve(t, app(['head', '-q', '-c', String(1 << 20), '/nonexistent', '/dev/zero'], counted))
  await get(new URL(urlOf(h)))
  t.ok(await until(() => counted.released === 1, 5000), 'released')
  t.equal(counted.counted, 1 << 20, 'counted the stream, not the error message')
})

t.test('a client gone mid-stream: the child dies on its next write, the lease is released, bytes counted', async (t) => {
  const seen = fresh()
  const s = await serve(t, app(['cat', '/dev/zero'], seen))
  const ac = new AbortController()
  const res = await fetch(urlOf(s), { signal: ac.signal })
  t.equal(res.status, 200)
  const reader = res.body!.getReader()
  let got = 0
  while (got < 1 << 20) got += (await reader.read()).value?.byteLength ?? 0
  ac.abort()
  t.ok(await until(() => seen.released === 1, 5000), 'released within 5 s')
  t.ok(seen.counted >= got, 'what the client took was counted')
})

t.test('a client that takes no bytes is cut after the idle timeout', async (t) => {
  const seen = fresh()
  const logs: string[] = []
  const log = { ...silentLogger, warn: (_o: object, msg: string) => { logs.push(msg) } } as unknown as Logger
  const s = await serve(t, app(['cat', '/dev/zero'], seen, { idleTimeoutMs: 300, log }))
  const c = net.connect((s.address() as AddressInfo).port, '127.0.0.1')
  await once(c, 'connect')
  c.on('error', () => {})
  c.pause() // never read: the socket buffers fill and cat blocks
  c.write('GET /?id=guests/g@s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  t.teardown(() => { c.destroy() })
  t.ok(await until(() => seen.released === 1, 10_000), 'the child was killed and the lease released')
  t.ok(logs.includes('download client took no bytes for the idle timeout; cutting it'), 'and it said so')
  const closed = once(c, 'close').then(() => true)
  c.resume()
  t.equal(await Promise.race([closed, new Promise((r) => setTimeout(() => r(false), 5000))]), true, 'the connection was closed')
})
