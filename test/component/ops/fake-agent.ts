/**
 * The real Koa app (src/http/app.ts) over fake services and a fake zfs: no
 * ZFS, no store. For the ops component tests and the CLI tests.
 */
import { Readable, Writable } from 'node:stream'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createApp, type AppOps } from '../../../src/agent/http/app.js'
import { jsonLogger } from '../../../src/common/log.js'
import { NotFoundError } from '../../../src/agent/errors.js'
import type { Services } from '../../../src/agent/services/index.js'
import type { Zfs } from '../../../src/zfs/index.js'

export interface Teardown { teardown(fn: () => void | Promise<void>): void }

export const IMAGE = { id: 'img1', type: 'kvm', volume: 'tank/images/img1', snapshot: 'tank/images/img1@base', size: 8, status: 'complete' }
/** What /snapshots/download streams for any id. */
export const STREAM = Buffer.alloc(300 * 1024, 7)

export interface FakeAgent {
  readonly url: string
  readonly server: http.Server
  readonly logs: string[]
  readonly calls: Array<{ method: string; params: unknown }>
  poolHealth: string
  /** Make the next download fail after its first chunk. */
  cutNextDownload: boolean
  /** Make downloads endless (64 KiB chunks for ever): a client that does not read stalls them. */
  endlessDownloads: boolean
  /** Download leases released so far. */
  released: number
}

export function fakeServices(fa: Pick<FakeAgent, 'calls' | 'cutNextDownload'> & Partial<Pick<FakeAgent, 'endlessDownloads' | 'released'>>, o: { idleTimeoutMs?: number } = {}): Services {
  const rec = (method: string) => (p: unknown) => { fa.calls.push({ method, params: p }) }
  const images = {
    listImages: async () => { rec('ListImages')({}); return { images: [IMAGE] } },
    getImage: async (p: { id: string }) => {
      rec('GetImage')(p)
      if (p.id !== IMAGE.id) throw new NotFoundError()
      return { images: [IMAGE] }
    },
    requestImage: async (p: { id: string }) => { rec('RequestImage')(p); await new Promise((r) => setTimeout(r, 150)); return { images: [{ ...IMAGE, id: p.id }] } },
    deleteImage: async (p: { id: string }) => { rec('DeleteImage')(p); return { images: [IMAGE] } },
    cloneImage: async (p: { id: string; dest: string }) => { rec('CloneImage')(p); return { volumes: [{ id: `tank/${p.dest}`, size: 8, device: `/dev/zvol/tank/${p.dest}` }] } },
  }
  const snap = (m: string) => async (p: { id?: string; dest?: string }) => {
    rec(m)(p)
    return { snapshots: [{ id: `tank/${p.id ?? 'guests/g1'}@${p.dest ?? 's1'}`, size: 4096 }] }
  }
  const snapshots = {
    listSnapshots: snap('ListSnapshots'), getSnapshotRpc: snap('GetSnapshot'), createSnapshot: snap('CreateSnapshot'),
    deleteSnapshot: snap('DeleteSnapshot'), rollbackSnapshot: snap('RollbackSnapshot'),
  }
  const downloads = {
    ...(o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.idleTimeoutMs }),
    async describe(req: { id: string }) {
      fa.calls.push({ method: 'describe', params: req })
      if (!req.id.includes('@')) throw new NotFoundError()
      return { snapshot: `tank/${req.id}`, kind: 'full' as const, estimate: STREAM.length }
    },
    async open(req: { id: string; recursive: boolean }) {
      fa.calls.push({ method: 'download', params: req })
      if (!req.id.includes('@')) throw new NotFoundError()
      const cut = fa.cutNextDownload
      fa.cutNextDownload = false
      let fail: (e: Error) => void = () => {}
      let ok: () => void = () => {}
      const done = new Promise<void>((res, rej) => { ok = res; fail = rej })
      done.catch(() => {})
      const chunks = cut ? [STREAM.subarray(0, 100 * 1024)] : [STREAM.subarray(0, 100 * 1024), STREAM.subarray(100 * 1024)]
      // A pause before the end, so a cut happens after bytes reached the client.
      const endless = fa.endlessDownloads === true
      let killed = false
      let gone = false // release() is idempotent, as the real one
      const kill = () => { if (endless && !killed) { killed = true; stdout.destroy(); fail(new Error('killed')) } }
      const stdout = Readable.from((async function* () {
        if (endless) { while (!killed) { yield Buffer.alloc(64 * 1024, 1); await new Promise((r) => setImmediate(r)) } return }
        for (const c of chunks) { yield c; await new Promise((r) => setTimeout(r, 50)) }
      })())
      stdout.on('end', () => (cut ? fail(new Error('zfs send died')) : ok()))
      return {
        snapshot: `tank/${req.id}`, kind: 'full' as const, estimate: STREAM.length,
        start: () => ({ pid: undefined, stdin: null, stdout, done, kill }),
        async release() { if (gone) return; gone = true; kill(); fa.released = (fa.released ?? 0) + 1 },
      }
    },
  }
  return { images, snapshots, downloads, volumes: {}, disks: {} } as unknown as Services
}

export function fakeZfs(fa: Pick<FakeAgent, 'poolHealth'>): Zfs {
  return {
    async pools() {
      if (fa.poolHealth === 'ERROR') throw new Error('zpool list failed: no /dev/zfs')
      return [{ name: 'tank', size: 1, allocated: 0, free: 1, health: fa.poolHealth }]
    },
  } as unknown as Zfs
}

export interface Res { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

/** One request to the app, its whole answer read; a JSON Content-Type when there is a body, unless `headers` say otherwise. */
export function req(target: { url: string; socket?: string }, method: string, path: string, o: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Res> {
  const u = new URL(target.url)
  return new Promise((resolve, reject) => {
    const r = http.request({
      ...(target.socket ? { socketPath: target.socket } : { hostname: u.hostname, port: u.port }),
      path, method, headers: { ...(o.body ? { 'Content-Type': 'application/json' } : {}), ...o.headers },
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    r.on('error', reject)
    r.end(o.body)
  })
}

/** The app on 127.0.0.1:0 (or `socket`), logging JSON lines into `logs`. */
export async function startFakeAgent(t: Teardown, ops: AppOps = {}, o: { listen?: (s: http.Server) => Promise<void>; idleTimeoutMs?: number } = {}): Promise<FakeAgent> {
  const logs: string[] = []
  const sink = new Writable({ write(c: Buffer, _e, cb) { logs.push(...c.toString().split('\n').filter(Boolean)); cb() } })
  const fa = { logs, calls: [] as FakeAgent['calls'], poolHealth: 'ONLINE', cutNextDownload: false, endlessDownloads: false, released: 0 }
  const app = createApp({ services: fakeServices(fa, o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.idleTimeoutMs }), zfs: fakeZfs(fa), log: jsonLogger(sink), ops: { pool: 'tank', ...ops } })
  const server = http.createServer(app.callback())
  if (o.listen) await o.listen(server)
  else { server.listen(0, '127.0.0.1'); await once(server, 'listening') }
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const addr = server.address()
  const url = typeof addr === 'string' ? 'http://localhost' : `http://127.0.0.1:${(addr as AddressInfo).port}`
  return Object.assign(fa, { url, server })
}

// Run directly (tap runs every file here): one check that the fakes build an app.
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  const { default: t } = await import('tap')
  t.test('the fake agent serves /healthz', async (t) => {
    const a = await startFakeAgent(t)
    const r = await fetch(`${a.url}/healthz`)
    t.equal(r.status, 200)
  })
}
