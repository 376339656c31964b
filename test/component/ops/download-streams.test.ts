/**
 * The download route over a real child process standing in for `zfs send`
 * (spawned through the one process runner, as zfs is), with bytes counted:
 * a client gone frees the child's stdout so the lease is released, and a
 * finished stream reaches the client whole before the response ends.
 */
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import Koa from 'koa'
import { spawnCommand } from '../../../src/common/exec.js'
import { snapshotDownload, fromQuery } from '../../../src/agent/http/snapshot-download.js'
import { silentLogger } from '../../../src/common/log.js'
import type { Lease } from '../../../src/agent/services/downloads.js'

function serve(t: { teardown(fn: () => void): void }, argv: [string, ...string[]], counted: { n: number }, released: { n: number }): Promise<string> {
  const downloads = {
    async describe() { return { snapshot: 'tank/guests/g@s', kind: 'full' as const, estimate: undefined } },
    async open(): Promise<Lease> {
      const child = spawnCommand(argv[0], argv.slice(1), () => new Error(`${argv[0]} failed`), { stdout: 'pipe' })
      let done: Promise<void> | undefined
      // As the real lease: kill, wait for the child to be gone, then drop the hold.
      const release = () => (done ??= (async () => { child.kill(); await child.done.catch(() => {}); released.n++ })())
      return { snapshot: 'tank/guests/g@s', kind: 'full', estimate: undefined, child, release }
    },
  }
  const app = new Koa()
  app.use(snapshotDownload({ downloads, log: silentLogger, onSentBytes: (n) => { counted.n += n } }, fromQuery))
  const server = http.createServer(app.callback()).listen(0, '127.0.0.1')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return once(server, 'listening').then(() => `http://127.0.0.1:${(server.address() as AddressInfo).port}/?id=guests/g@s`)
}

async function until(what: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!what() && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
  return what()
}

t.test('a client gone mid-stream: the child is killed and the lease released, bytes counted', async (t) => {
  const counted = { n: 0 }
  const released = { n: 0 }
  const url = await serve(t, ['cat', '/dev/zero'], counted, released)
  const ac = new AbortController()
  const res = await fetch(url, { signal: ac.signal })
  t.equal(res.status, 200)
  const reader = res.body!.getReader()
  let got = 0
  while (got < 1 << 20) got += (await reader.read()).value?.byteLength ?? 0
  ac.abort()
  t.ok(await until(() => released.n === 1, 5000), 'released within 5 s')
  t.ok(counted.n >= got, 'what the client took was counted')
})

t.test('a whole stream: every byte reaches the client before the response ends, and is counted once', async (t) => {
  const counted = { n: 0 }
  const released = { n: 0 }
  const size = 5_000_000
  const url = await serve(t, ['head', '-c', String(size), '/dev/zero'], counted, released)
  const res = await fetch(url)
  t.equal(res.status, 200)
  // A slow reader, so the response is backed up when the child exits.
  const reader = res.body!.getReader()
  let got = 0
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    got += value.byteLength
    await new Promise((r) => setTimeout(r, 2))
  }
  t.equal(got, size)
  t.equal(counted.n, size)
  t.ok(await until(() => released.n === 1, 5000), 'released')
})
