/**
 * An agent on a real throw-away pool (inside the VM), with a local image
 * server serving real zfs send streams, reachable over loopback HTTP in both
 * wire dialects.
 */
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { gzipSync } from 'node:zlib'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import { createAgent, type Agent } from '../../src/agent/app.js'
import { DEFAULTS, type Config } from '../../src/agent/config.js'
import { silentLogger } from '../../src/common/log.js'
import { createFilePool, settle, sh } from './zpool.js'

export const IMAGE_ID = '7a8c0d3e-1b2f-4c5d-9e6f-0a1b2c3d4e5f'
export const GZIP_ID = 'gzipID'

interface T {
  teardown(fn: () => void | Promise<void>): void
  testdir(): string
}

/** A zvol snapshot stream made on the spot: `sizeMiB` of random data, snapshot @test. */
export function makeZvolStream(pool: string, o: { sizeMiB?: number; snapshots?: string[]; replicate?: boolean; filesystem?: boolean } = {}): Buffer {
  const ds = `${pool}/prep${randomBytes(3).toString('hex')}`
  if (o.filesystem) sh('zfs', ['create', ds])
  else {
    sh('zfs', ['create', '-V', `${o.sizeMiB ?? 4}M`, ds])
    settle()
    const fd = openSync(`/dev/zvol/${ds}`, 'r+')
    writeSync(fd, randomBytes(1024 * 1024))
    closeSync(fd)
  }
  const snaps = o.snapshots ?? ['test']
  for (const s of snaps) sh('zfs', ['snapshot', `${ds}@${s}`])
  const args = ['send', ...(o.replicate ? ['-R'] : []), `${ds}@${snaps.at(-1)}`]
  // Small test streams only: held in memory.
  const stream = execFileSync('zfs', args, { maxBuffer: 1 << 30, env: { ...process.env, LC_ALL: 'C' } })
  destroyWhenFree(ds)
  return stream
}

/** `zfs destroy -r`, retried while udev still holds a zvol it was told about just now. */
export function destroyWhenFree(ds: string): void {
  for (let attempt = 1; ; attempt++) {
    try { sh('zfs', ['destroy', '-r', ds]); return } catch (e) {
      if (attempt >= 10 || !/dataset is busy/.test(String((e as Error).message))) throw e
      settle()
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200 * attempt)
    }
  }
}

type Route = Buffer | ((res: import('node:http').ServerResponse, req: import('node:http').IncomingMessage) => void)

export const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex')
export const blake2bHex = (b: Buffer) => createHash('blake2b512').update(b).digest('hex')
/** The digest headers the image service publishes (the agent refuses undigested images by default, and checks the BLAKE2b). */
export const digestHeader = (b: Buffer) => ({ 'X-Image-Sha256': sha256hex(b), 'X-Image-Blake2b512': blake2bHex(b) })

export interface ImageServer {
  readonly url: string
  /** Requests seen per path. */
  readonly hits: Map<string, number>
  /** path → body (or a handler) */
  readonly routes: Map<string, Route>
  /** Bytes of bodies sent per path. */
  readonly sent: Map<string, number>
}

export async function startImageServer(t: T): Promise<ImageServer> {
  const hits = new Map<string, number>()
  const routes = new Map<string, Route>()
  const sent = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    const path = req.url ?? ''
    hits.set(path, (hits.get(path) ?? 0) + 1)
    const r = routes.get(path)
    if (r === undefined) { res.writeHead(404); res.end('no such image\n'); return }
    if (typeof r === 'function') { r(res, req); return }
    const count = (n: number) => sent.set(path, (sent.get(path) ?? 0) + n)
    // Dribble the body out slowly enough that concurrent requests overlap.
    // Published like the image service does: the agent fails closed without a digest.
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': r.length, ...digestHeader(r) })
    let off = 0
    const step = () => {
      if (off >= r.length) { res.end(); return }
      const piece = r.subarray(off, off + 256 * 1024)
      count(piece.length)
      res.write(piece)
      off += 256 * 1024
      setTimeout(step, 20)
    }
    step()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits, routes, sent }
}

export type Dialect = 'v1' | 'v2'
export interface Outcome { result?: any; error?: string; status: number }

export interface TestAgent {
  readonly pool: string
  readonly url: string
  readonly agent: Agent
  readonly images: ImageServer
  readonly stream: Buffer
  /** The agent's store: reopen it after a restart (t.testdir() again would wipe it). */
  readonly metadataDir: string
  call(dialect: Dialect, method: string, params: unknown): Promise<Outcome>
}

let seq = 1

/** Agents' stores, removed at exit: after every agent on one (restartAgent's too) has closed. */
const storeDirs = new Set<string>()
process.once('exit', () => { for (const d of storeDirs) rmSync(d, { recursive: true, force: true }) })

/** What startAgent allows as source hosts unless a test says otherwise (the default allows none of these). */
export const TEST_ALLOW_SOURCE_HOSTS: readonly string[] = ['127.0.0.1']

let standard: { stream: Buffer; gzipped: Buffer } | undefined
/**
 * The image every test agent is offered, made once per test process: each
 * agent has its own pool, so one stream serves them all, and making it
 * (a zvol, udev, a send, a destroy, a gzip) was a second or more per agent under TCG.
 */
function standardImage(pool: string): { stream: Buffer; gzipped: Buffer } {
  if (standard === undefined) {
    const stream = makeZvolStream(pool)
    standard = { stream, gzipped: gzipSync(stream) }
  }
  return standard
}

export async function startAgent(t: T, o: { config?: Partial<Config>; poolMiB?: number } = {}): Promise<TestAgent> {
  const { name: pool } = createFilePool(t, o.poolMiB ? { sizeMiB: o.poolMiB } : {})
  const images = await startImageServer(t)
  const { stream, gzipped } = standardImage(pool)
  images.routes.set(`/images/${IMAGE_ID}/download`, stream)
  images.routes.set(`/images/${GZIP_ID}/download`, gzipped)
  // One store per agent (a test may start several; a second t.testdir() would wipe the first agent's).
  const metadataDir = mkdtempSync(join(tmpdir(), 'mistify-agent-db-'))
  storeDirs.add(metadataDir)
  const config: Config = {
    // 20 s: the test's own synchronous zfs calls block this process, image server and agent included, for seconds under load.
    ...DEFAULTS, zpool: pool, metadataDir, imageServer: images.url, fetchIdleTimeoutMs: 20_000,
    // Tests serve their sources from local servers on loopback: allowed here, denied by default.
    allowSourceHosts: TEST_ALLOW_SOURCE_HOSTS, ...o.config,
  }
  const agent = await createAgent(config, { log: silentLogger })
  const server = agent.app.listen(0, '127.0.0.1')
  // Longer than the client's keep-alive, so a reused connection is never closed under it.
  server.keepAliveTimeout = 65_000
  await once(server, 'listening')
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => { server.closeAllConnections(); server.close(); await agent.close() })

  async function call(dialect: Dialect, method: string, params: unknown): Promise<Outcome> {
    const id = seq++
    const body = dialect === 'v1'
      ? { method: `ImageStore.${method}`, params: [params], id }
      : { jsonrpc: '2.0', method, params: [params], id }
    const post = () => fetch(`${url}/_mistify_RPC_`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
    // A pooled connection reset before the request went out is the transport's, not the agent's: once more.
    const res = await post().catch((e: { cause?: { code?: string } }) => { if (e.cause?.code === 'ECONNRESET') return post(); throw e })
    const text = await res.text()
    if (res.status !== 200) return { status: res.status, error: text }
    const env = JSON.parse(text)
    if (dialect === 'v1') {
      if (env.error !== null) return { status: 200, error: env.error }
      return { status: 200, result: env.result }
    }
    if (env.error) return { status: 200, error: env.error.message }
    return { status: 200, result: env.result }
  }
  return { pool, url, agent, images, stream, metadataDir, call }
}

/** A route that sends `body` in `chunk`-byte pieces every `delayMs`: slow enough to watch or interrupt. */
export function dribble(body: Buffer, o: { chunk?: number; delayMs?: number } = {}): Route {
  const chunk = o.chunk ?? 64 * 1024
  const digest = digestHeader(body)
  return (res) => {
    res.writeHead(200, { 'Content-Length': body.length, ...digest })
    let off = 0
    const step = () => {
      if (res.destroyed) return
      if (off >= body.length) { res.end(); return }
      res.write(body.subarray(off, off + chunk))
      off += chunk
      setTimeout(step, o.delayMs ?? 20)
    }
    step()
  }
}

/** A fresh agent over the same pool and store, as after a restart (the old one must be closed). */
export async function restartAgent(t: T, a: TestAgent, over: Partial<Config> = {}): Promise<Agent> {
  const again = await createAgent({ ...DEFAULTS, zpool: a.pool, metadataDir: a.metadataDir, imageServer: a.images.url, allowSourceHosts: TEST_ALLOW_SOURCE_HOSTS, ...over }, { log: silentLogger })
  t.teardown(() => again.close())
  return again
}
