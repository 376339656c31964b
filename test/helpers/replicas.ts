/**
 * Image service replicas for the agent's failover tests: real image-service
 * processes (so one can be killed with SIGKILL), an image uploaded to each
 * under the same id (Glance lets the client choose it), and a counting proxy
 * in front of each that measures the body bytes the agent really fetched and
 * can hold a download part way, so the test kills the replica at a known byte.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir, type TestContext } from './image-service.js'

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'image-service', 'main.js')

/** A loopback port free just now (the service takes a port number, and 0 would disable its Glance API). */
export async function freePort(): Promise<number> {
  const s = createNetServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

export interface ServiceProcess {
  readonly native: string
  readonly glance: string
  readonly proc: ChildProcess
  /** SIGKILL, and wait for the process to be gone. */
  kill(): Promise<void>
}

/** One mistify-image-service process on loopback over its own data directory (plus `args`); killed in teardown. */
export async function spawnImageService(t: TestContext, args: string[] = []): Promise<ServiceProcess> {
  const dir = tempDir(t, 'mis-replica-')
  const [port, glancePort] = [await freePort(), await freePort()]
  const proc = spawn(process.execPath, [MAIN, '--port', String(port), '--glance-port', String(glancePort), '--listen', '127.0.0.1', '--data-dir', dir, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr?.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = once(proc, 'exit')
  const kill = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    proc.kill('SIGKILL')
    await exited
  }
  t.teardown(kill)
  const native = `http://127.0.0.1:${port}`
  // Up when it answers; a process that exits first says why. A minute: node starts slowly under emulation (the VM).
  for (const until = Date.now() + 60_000; ;) {
    if (proc.exitCode !== null) throw new Error(`image service exited with ${proc.exitCode}: ${stderr}`)
    const ok = await fetch(`${native}/images`).then((r) => r.ok, () => false)
    if (ok) break
    if (Date.now() > until) throw new Error(`image service on ${native} did not come up: ${stderr}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { native, glance: `http://127.0.0.1:${glancePort}`, proc, kill }
}

/** Upload `bytes` as image `id` (a UUID) through Glance; resolves with the sha256 the service publishes. */
export async function uploadWithId(svc: ServiceProcess, id: string, bytes: Buffer): Promise<string> {
  const made = await fetch(`${svc.glance}/v2/images`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ id, name: 'replicated', disk_format: 'raw', container_format: 'bare' }),
  })
  if (made.status !== 201) throw new Error(`glance create ${id}: ${made.status} ${await made.text()}`)
  const put = await fetch(`${svc.glance}/v2/images/${id}/file`, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: bytes as NonNullable<RequestInit['body']> })
  if (put.status !== 204) throw new Error(`glance upload ${id}: ${put.status} ${await put.text()}`)
  const meta = await fetch(`${svc.native}/images/${id}`).then((r) => r.json()) as { status: string; sha256: string; size: number }
  if (meta.status !== 'complete' || meta.size !== bytes.length) throw new Error(`image ${id} on ${svc.native}: ${JSON.stringify(meta)}`)
  return meta.sha256
}

/** One image download seen by a proxy: the Range asked for and the body bytes passed on. */
export interface Transfer { readonly range: string | undefined; readonly ifRange: string | undefined; status: number; etag: string | undefined; bytes: number }

/**
 * The first download (over all proxies sharing it) to pass `atByte` body
 * bytes is held there: exactly that many bytes reach the agent, then nothing
 * more; `held` resolves with the proxy that holds it. The test then kills
 * that proxy's replica and calls its cut(): the connection ends after those
 * bytes (as the kernel ends a killed server's), a body cut at a known byte.
 */
export class Trip {
  private fire!: (p: CountingProxy) => void
  readonly held: Promise<CountingProxy> = new Promise((r) => { this.fire = r })
  private done = false
  /** `atByte` undefined: not armed yet (arm() it once the image's size is known); until then everything passes. */
  constructor(private at?: number) {}
  get atByte(): number {
    if (this.at === undefined) throw new Error('trip not armed')
    return this.at
  }
  arm(atByte: number): void { this.at = atByte }
  /** How many of `n` more bytes (after `sofar`) may pass; the crossing one trips it. */
  take(p: CountingProxy, sofar: number, n: number): number {
    if (this.done) return p.holding ? 0 : n
    if (this.at === undefined || sofar + n < this.at) return n
    this.done = true
    p.holding = true
    this.fire(p)
    return this.at - sofar
  }
}

export interface CountingProxy {
  readonly url: string
  /** Every download through this proxy, in order. */
  readonly transfers: Transfer[]
  /** Body bytes of downloads passed to the agent. */
  bodyBytes(): number
  holding: boolean
  /** End the held download's connection after the bytes passed on (its replica is gone). */
  cut(): void
}

const isDownload = (path: string) => /^\/images\/[^/]+\/download$/.test(path)

/**
 * A loopback HTTP proxy in front of `upstream`. Counts the body bytes of
 * image downloads it passes on. With the upstream gone, a new request has
 * its connection dropped (what the agent sees from a dead replica).
 */
export async function startCountingProxy(t: TestContext, upstream: string, trip?: Trip): Promise<CountingProxy> {
  const transfers: Transfer[] = []
  const up = new URL(upstream)
  let held: { res: ServerResponse; ures: IncomingMessage } | undefined
  const proxy: CountingProxy = {
    url: '', transfers, holding: false,
    bodyBytes: () => transfers.reduce((n, x) => n + x.bytes, 0),
    cut: () => {
      if (!held) throw new Error('cut: no download is held here')
      // Paused, the replica's socket is not read, so its end would never be seen: the test says when.
      held.res.socket?.end()
      held.ures.destroy()
    },
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/'
    const headers = { ...req.headers, host: up.host }
    const out = request({ host: up.hostname, port: up.port, method: req.method, path, headers }, (ures) => {
      if (!isDownload(path)) {
        res.writeHead(ures.statusCode ?? 502, ures.headers)
        ures.pipe(res)
        return
      }
      const x: Transfer = { range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, status: ures.statusCode ?? 0, etag: ures.headers.etag, bytes: 0 }
      transfers.push(x)
      res.writeHead(ures.statusCode ?? 502, ures.headers)
      ures.on('data', (c: Buffer) => {
        const n = trip ? trip.take(proxy, x.bytes, c.length) : c.length
        if (n > 0) { x.bytes += n; res.write(n === c.length ? c : c.subarray(0, n)) }
        if (proxy.holding && !held) { held = { res, ures }; ures.pause() } // nothing more read from the replica or passed on
      })
      ures.on('end', () => { if (held?.res !== res) res.end() })
      // The replica died mid-body: the bytes passed on are delivered, then the connection ends short.
      ures.on('close', () => { if (!ures.complete && held?.res !== res) res.socket?.end() })
    })
    out.on('error', () => { res.socket?.destroy() })
    req.pipe(out)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
  return Object.assign(proxy, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })
}
