/**
 * Helpers for the image-service component tests: the service on loopback
 * ephemeral ports over a per-test data directory, a local "image source"
 * HTTP server with misbehaving paths, raw aborted uploads, and polling.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { DEFAULTS, type Config } from '../../src/image-service/config.js'
import { silentLogger } from '../../src/common/log.js'
import { startService, type RunningService } from '../../src/image-service/server.js'

export interface TestContext {
  teardown(fn: () => void | Promise<void>): void
}

/** The payload the original test suite's fake source serves. */
export const TESTDATA = 'testdatatestdatatestdata'

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export interface TestService {
  native: string
  glance: string
  svc: RunningService
  dataDir: string
}

export function tempDir(t: TestContext, prefix = 'mis-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function testConfig(dataDir: string, over: Partial<Config> = {}): Config {
  return {
    ...DEFAULTS, dataDir, port: 0, glancePort: 1, listen: '127.0.0.1',
    progressIntervalMs: 50, fetchTimeoutMs: 3_000, idleTimeoutMs: 10_000,
    // The tests' sources are local servers on loopback: allowed here, denied by default.
    allowSourceHosts: ['127.0.0.1'], ...over,
  }
}

/** Start the service (both APIs on random loopback ports); stopped in teardown. */
export async function startTestService(t: TestContext, over: Partial<Config> = {}, dataDir?: string): Promise<TestService> {
  const dir = dataDir ?? tempDir(t)
  const svc = await startService(testConfig(dir, over), { log: silentLogger, ephemeralPorts: true, closeGraceMs: 200 })
  t.teardown(() => svc.close())
  return { native: svc.nativeUrl, glance: svc.glanceUrl ?? '', svc, dataDir: dir }
}

export interface SourceServer {
  url: string
  /** Requests seen per path. */
  hits: Map<string, number>
  /** Paths that answer 404 until removed from this set. */
  failing: Set<string>
  /** Paths that stall (headers, no body) while in this set. */
  stalling: Set<string>
}

/**
 * A loopback HTTP server standing in for an image source:
 *   /data, /data?…   TESTDATA (Content-Length set)
 *   /404             404
 *   /redirect        302 → /data
 *   /gzip            gzipped TESTDATA with Content-Encoding: gzip (must be stored as is)
 *   /short           announces 100 bytes, sends 10, drops the connection
 *   /big/<n>         n bytes of 'x'
 *   any path in `failing` answers 404; any path in `stalling` sends headers and then nothing.
 */
export async function startSourceServer(t: TestContext): Promise<SourceServer> {
  const hits = new Map<string, number>()
  const failing = new Set<string>()
  const stalling = new Set<string>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    hits.set(path, (hits.get(path) ?? 0) + 1)
    if (failing.has(path) || path === '/404') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
      return
    }
    if (stalling.has(path)) {
      res.writeHead(200, { 'content-length': '1000' })
      res.write('x')
      return
    }
    if (path === '/redirect') {
      res.writeHead(302, { location: '/data' }).end()
      return
    }
    if (path === '/gzip') {
      const body = gzipSync(Buffer.from(TESTDATA))
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': String(body.length) }).end(body)
      return
    }
    if (path === '/short') {
      res.writeHead(200, { 'content-length': '100' })
      res.write('0123456789', () => setTimeout(() => res.destroy(), 20))
      return
    }
    const big = /^\/big\/(\d+)$/.exec(path)
    if (big) {
      const body = Buffer.alloc(Number(big[1]), 'x')
      res.writeHead(200, { 'content-length': String(body.length) }).end(body)
      return
    }
    res.writeHead(200, { 'content-length': String(TESTDATA.length), 'content-type': 'application/octet-stream' }).end(TESTDATA)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => {
    server.closeAllConnections()
    server.close(() => r())
  }))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, hits, failing, stalling }
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Poll until fn returns a value (not undefined), or fail after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await delay(25)
  }
}

export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, init)
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch { /* not JSON */ }
  return { status: res.status, body, headers: res.headers }
}

/** Wait until a native record reaches one of the statuses. */
export async function waitForNative(native: string, id: string, statuses: string[], timeoutMs = 10_000): Promise<any> {
  return waitFor(`image ${id} to be ${statuses.join('|')}`, async () => {
    const r = await getJson(`${native}/images/${id}`)
    return r.status === 200 && statuses.includes(r.body.status) ? r.body : undefined
  }, timeoutMs)
}

/**
 * Send part of a request body and then drop the connection, like a client
 * that crashed mid-upload. Resolves once the socket is gone.
 */
export async function abortedUpload(url: string, method: string, headers: Record<string, string>, part: Buffer): Promise<void> {
  const req = request(url, { method, headers })
  req.on('error', () => {})
  await new Promise<void>((r) => req.write(part, () => r()))
  await delay(100)
  req.destroy()
  await delay(50)
}

/** PUT a native upload; returns status and parsed body. */
export async function nativeUpload(native: string, data: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const r = await getJson(`${native}/images`, { method: 'PUT', headers: { 'x-image-type': 'kvm', ...headers }, body: data as NonNullable<RequestInit['body']> })
  return { status: r.status, body: r.body }
}
