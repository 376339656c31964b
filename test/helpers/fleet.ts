/**
 * Engines for the fleet tests (test/fleet): Ceph RGW and nginx, started through the project's
 * own scripts (scripts/fleet/*.sh) once per test file, or reused when a runner already started
 * them once per run and exported S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and
 * CEPH_DIR, which the RGW fault test needs to stop and start radosgw).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { TestContext } from './image-service.js'

const run = promisify(execFile)
/** dist/test/helpers → the project root. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const script = (name: string): string => join(ROOT, 'scripts/fleet', name)

export interface Ceph {
  endpoint: string
  /** The cluster's state dir; undefined when reusing engines someone else started without telling. */
  dir: string | undefined
  stopRgw(): Promise<void>
  startRgw(): Promise<void>
}

async function sh(name: string, args: string[], timeoutMs = 180_000, env: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await run('nice', ['-n', '19', 'bash', script(name), ...args], { timeout: timeoutMs, maxBuffer: 1 << 20, env: { ...process.env, ...env } })
    return stdout
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new Error(`${name} ${args.join(' ')} failed: ${e.stderr || e.message}`)
  }
}

/** Ceph with RGW: reused from env, else started now and torn down (kill -9, rm) in teardown. */
export async function startCeph(t: TestContext): Promise<Ceph> {
  let dir = process.env.CEPH_DIR
  const reuse = process.env.S3_ENDPOINT !== undefined && process.env.AWS_ACCESS_KEY_ID !== undefined && process.env.AWS_SECRET_ACCESS_KEY !== undefined
  if (!reuse) {
    await sh('ceph.sh', ['install'], 300_000)
    const parent = mkdtempSync(join(tmpdir(), 'fleet-ceph-'))
    dir = join(parent, 'c')
    const stateDir = dir
    t.teardown(() => sh('ceph.sh', ['down', stateDir]).then(() => rmSync(parent, { recursive: true, force: true })))
    const out = await sh('ceph.sh', ['up', dir])
    for (const line of out.split('\n')) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim())
      if (m) process.env[m[1] as string] = m[2] as string
    }
  }
  const endpoint = process.env.S3_ENDPOINT as string
  const need = (): string => {
    if (dir === undefined) throw new Error('CEPH_DIR unset: cannot stop or start radosgw of engines started elsewhere')
    return dir
  }
  return {
    endpoint,
    dir,
    stopRgw: async () => { await sh('ceph.sh', ['stop-rgw', need()]) },
    startRgw: async () => { await sh('ceph.sh', ['start-rgw', need()]) },
  }
}

export interface Nginx {
  url: string
}

/**
 * nginx caching in front of `upstreams` (host:port), torn down in teardown;
 * `limitRate`: bytes/s one cache fill reads from a replica (0: no limit).
 */
export async function startNginx(t: TestContext, upstreams: string[], o: { limitRate?: number } = {}): Promise<Nginx> {
  await sh('nginx.sh', ['install'], 120_000)
  const parent = mkdtempSync(join(tmpdir(), 'fleet-nginx-'))
  const dir = join(parent, 'n')
  const port = await freePort()
  t.teardown(() => sh('nginx.sh', ['down', dir]).then(() => rmSync(parent, { recursive: true, force: true })))
  await sh('nginx.sh', ['up', dir, String(port), ...upstreams], 180_000, { NGINX_PROXY_LIMIT_RATE: String(o.limitRate ?? 0) })
  return { url: `http://127.0.0.1:${port}` }
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => (a && typeof a === 'object' ? res(a.port) : rej(new Error('no port'))))
    })
  })
}

/** A bucket name no other test (or run) uses. */
export function uniqueBucket(what: string): string {
  return `fleet-${what}-${randomBytes(4).toString('hex')}`
}

/** `--blobs` for a bucket on the test cluster. */
export function s3Url(ceph: Ceph, bucket: string, prefix = ''): string {
  return `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(ceph.endpoint)}&region=us-east-1`
}

/**
 * n deterministic pseudo-random bytes in chunks, produced on demand (never held whole), so a
 * large body's memory cost is the consumer's alone.
 */
export async function* bytes(n: number, chunk = 1 << 20, seed = 1): AsyncGenerator<Buffer> {
  let x = seed >>> 0 || 1
  for (let off = 0; off < n; off += chunk) {
    const len = Math.min(chunk, n - off)
    const b = Buffer.allocUnsafe(len)
    for (let i = 0; i + 4 <= len; i += 4) {
      // xorshift32: cheap, and different on every 4 bytes so no store can dedupe or compress it.
      x ^= x << 13; x >>>= 0
      x ^= x >>> 17
      x ^= x << 5; x >>>= 0
      b.writeUInt32LE(x, i)
    }
    for (let i = len - (len % 4); i < len; i++) b[i] = 0x5a
    yield b
  }
}

/** The whole of a small body (tests compare with it). */
export async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of src) parts.push(Buffer.from(c))
  return Buffer.concat(parts)
}
