/** /snapshots/download: `zfs send` of a held snapshot streamed to the client (README: "Downloading snapshots"). */
import type Koa from 'koa'
import type { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { bytesWrittenBy, canCountWrites, countingStream } from '../../common/counting.js'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Child } from '../../common/exec.js'
import { InvalidParamsError } from '../errors.js'
import { BodyTooLarge, readBody } from '../../common/body.js'
import { wireError } from '../rpc/error-codes.js'
import { decodeDownloadRequest } from '../rpc/requests.js'
import type { Logger } from '../../common/log.js'
import type { createDownloadService, DownloadRequest, Lease, Probe } from '../services/downloads.js'

export const DOWNLOAD_PATH = '/snapshots/download'
const MAX_BODY = 64 * 1024

type Service = ReturnType<typeof createDownloadService>
type Downloads = Pick<Service, 'open' | 'describe'> & Partial<Pick<Service, 'idleTimeoutMs'>>

const DEFAULT_IDLE_TIMEOUT_MS = 60_000

type RequestReader = (ctx: Koa.Context) => Promise<DownloadRequest>

/** GET and HEAD: the request in the query string, for curl. */
export const fromQuery: RequestReader = async (ctx) => {
  const q = ctx.query
  const one = (k: string) => { const v = q[k]; if (Array.isArray(v)) throw new InvalidParamsError(`${k} given twice`); return v ?? '' }
  const flag = (k: string) => {
    const v = one(k)
    if (v === '' || v === '0' || v === 'false') return false
    if (v === '1' || v === 'true') return true
    throw new InvalidParamsError(`${k}: expected 1/true or 0/false, got ${JSON.stringify(v)}`)
  }
  return {
    id: one('id'), from: one('from'), from_guid: one('from_guid'), token: one('token'),
    recursive: flag('recursive'), intermediates: flag('intermediates'), compressed: flag('compressed'), raw: flag('raw'),
  }
}

/** POST: the agent's JSON SnapshotRequest plus our fields. */
export const fromBody: RequestReader = async (ctx) => {
  const body = await readBody(ctx.req, MAX_BODY).catch((e: unknown) => {
    if (!(e instanceof BodyTooLarge)) throw e
    ctx.set('Connection', 'close') // the rest of the body was drained, not read
    throw new InvalidParamsError('request body too large')
  })
  return decodeDownloadRequest(body.toString('utf8'))
}

function headersOf(p: Probe): Record<string, string> {
  return {
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': `attachment; filename="${p.snapshot.replace(/[/@]/g, '_')}.zfs"`,
    'X-Snapshot': p.snapshot,
    'X-Send-Kind': p.kind,
    ...(p.estimate === undefined ? {} : { 'X-Estimated-Size': String(p.estimate) }),
  }
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' })
  res.end(`${text}\n`)
}

/** The parts of libuv's TCP handle that hand a socket to a child. */
interface StreamHandle { constructor?: { name?: string }; fd?: number; readStop?: () => number; readStart?: () => number; setBlocking?: (on: boolean) => number }

/**
 * The socket's handle when `zfs send` can write into it itself: a plain TCP
 * socket with a descriptor, and a way to count what a child writes (for
 * /metrics and the idle cut). Otherwise (unix socket, TLS, no /proc) bytes go through us.
 */
function directHandle(socket: Socket | null): (StreamHandle & { fd: number }) | undefined {
  if (!socket || !canCountWrites || (socket as { encrypted?: boolean }).encrypted) return undefined
  const h = (socket as unknown as { _handle?: StreamHandle | null })._handle
  // TCP only: a failure after the 200 must reach the client as a reset, and a unix socket has none (its close is a clean EOF).
  if (!h || h.constructor?.name !== 'TCP') return undefined
  if (typeof h.fd !== 'number' || h.fd < 0 || typeof h.setBlocking !== 'function' || typeof h.readStop !== 'function') return undefined
  return h as StreamHandle & { fd: number }
}

/** Resolves once everything written to `socket` so far is in the kernel's hands. */
function flushed(socket: Socket): Promise<void> {
  while (socket.writableCorked > 0) socket.uncork()
  return new Promise((resolve, reject) => socket.write(Buffer.alloc(0), (e) => (e ? reject(e) : resolve())))
}

/**
 * Call `onIdle` once if `res` stays blocked (a write returned false and no
 * 'drain' came) for `ms`. Waiting on zfs is not idleness: only a client that
 * takes no bytes is. Returns a stop function.
 */
function watchIdle(res: ServerResponse, ms: number, onIdle: () => void): () => void {
  let blockedSince: number | undefined
  const onDrain = () => { blockedSince = undefined }
  res.on('drain', onDrain)
  const timer = setInterval(() => {
    if (!res.writableNeedDrain) { blockedSince = undefined; return }
    blockedSince ??= Date.now()
    if (Date.now() - blockedSince >= ms) { stop(); onIdle() }
  }, Math.max(10, Math.min(1000, Math.floor(ms / 4))))
  timer.unref()
  const stop = () => { clearInterval(timer); res.off('drain', onDrain) }
  return stop
}

/** What a child has written before it runs its program: the one byte libuv's forked child writes to unlock its signal pipe. */
const PRE_EXEC_BYTES = 1

/**
 * Follow a child that writes into the socket itself: count what it wrote
 * (its `wchar`, less the fork's own byte and its stderr), and call `onIdle` once if it wrote nothing for `ms` (the client takes no
 * bytes, so zfs send is blocked on the socket). A last reading when its
 * stderr closes, i.e. as it exits and before it is reaped, makes the count
 * whole. Returns a stop function.
 */
function followChild(child: Child, ms: number, onBytes: ((n: number) => void) | undefined, onIdle: () => void): () => void {
  const pid = child.pid
  if (pid === undefined) return () => {}
  let last = PRE_EXEC_BYTES
  let since = Date.now()
  let errBytes = 0 // zfs's own messages are not the stream
  const onErr = (c: Buffer) => { errBytes += c.length }
  child.stderr?.on('data', onErr)
  const sample = () => {
    const w = bytesWrittenBy(pid)
    if (w === undefined) return
    const now = w - errBytes
    if (now > last) { onBytes?.(now - last); last = now; since = Date.now(); return }
    if (Date.now() - since >= ms) { stop(); onIdle() }
  }
  const timer = setInterval(sample, Math.max(10, Math.min(250, Math.floor(ms / 4))))
  timer.unref()
  child.stderr?.once('end', sample)
  const stop = () => { clearInterval(timer); child.stderr?.off('end', sample); child.stderr?.off('data', onErr) }
  return stop
}

export function snapshotDownload(d: { downloads: Downloads; log: Logger; onSentBytes?: ((n: number) => void) | undefined }, requestOf: RequestReader): Koa.Middleware {
  const idleMs = d.downloads.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
  return async (ctx) => {
    ctx.respond = false // we drive the raw response: Koa must not end it for us
    const { req, res } = ctx
    let clientGone = false
    res.on('close', () => { if (!res.writableFinished) clientGone = true })
    let lease: Lease | undefined
    let closeDelimited = false
    try {
      if (ctx.method === 'HEAD') {
        const p = await d.downloads.describe(await requestOf(ctx))
        res.writeHead(200, headersOf(p))
        res.end()
        return
      }
      // Everything that can be refused is, here (dry run included): after the 200 only a reset can say no.
      lease = await d.downloads.open(await requestOf(ctx))
      const l = lease
      // Client gone while Node still watches the socket: kill zfs send and drop the hold.
      res.on('close', () => { if (!res.writableFinished) void l.release() })
      if (clientGone) throw new Error('client went away')
      const handle = directHandle(res.socket)
      if (handle && res.socket) {
        // Close-delimited: no length, no chunk framing, so a clean close is the whole stream and a failure a reset.
        closeDelimited = true
        res.useChunkedEncodingByDefault = false
        res.shouldKeepAlive = false
        res.writeHead(200, { ...headersOf(l), Connection: 'close' })
        res.flushHeaders()
      }
      const ok = handle && res.socket ? await sendDirect(d, ctx, l, res.socket, handle, idleMs) : await sendPiped(d, ctx, l, l.start('pipe'), idleMs)
      if (ok) res.end()
      else cut(res, closeDelimited)
    } catch (e) {
      if (res.headersSent) { cut(res, closeDelimited); return }
      if (clientGone) return
      const w = wireError(e, '1.0') // operators read these: zfs's own words, as the original
      if (w.httpStatus >= 500) d.log.error({ err: (e as Error).message, path: req.url }, 'download failed')
      sendText(res, w.httpStatus, w.message)
    } finally {
      await lease?.release()
    }
  }
}

type RouteDeps = Parameters<typeof snapshotDownload>[0]

/** A stream that failed after the 200: a reset (close-delimited) or a chunked body left without its last chunk; either way the client sees an error. */
function cut(res: ServerResponse, closeDelimited: boolean): void {
  if (res.destroyed) return
  if (closeDelimited) res.socket?.resetAndDestroy()
  else res.destroy()
}

/** The first chunk (the stream is left paused), or null when it ends without one. */
function firstChunk(out: Readable): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const done = (v: Buffer | null) => { out.off('data', onData); out.off('end', onEnd); out.off('close', onEnd); resolve(v) }
    const onData = (c: Buffer) => { out.pause(); done(c) }
    const onEnd = () => done(null)
    out.on('data', onData)
    out.once('end', onEnd)
    out.once('close', onEnd)
  })
}

/** Whether zfs send ended well; a failure is logged here (a client gone is not worth an error). */
async function outcome(d: RouteDeps, lease: Lease, child: Child, quiet: () => boolean): Promise<boolean> {
  try {
    await child.done
    return true
  } catch (e) {
    if (!quiet()) d.log.warn({ snapshot: lease.snapshot, err: (e as Error).message }, 'zfs send ended early; resetting the connection')
    return false
  }
}

/**
 * Zero-copy: zfs send's stdout is the client's socket. Once the headers are
 * in the kernel, Node stops reading the socket and the descriptor is made
 * blocking (O_NONBLOCK is shared with the child's copy: zfs would get EAGAIN),
 * so neither Node nor libuv touches it until the child has exited.
 */
async function sendDirect(d: RouteDeps, ctx: Koa.Context, lease: Lease, socket: Socket, h: StreamHandle & { fd: number }, idleMs: number): Promise<boolean> {
  await flushed(socket)
  if (socket.destroyed) return false
  h.readStop!()
  const err = h.setBlocking!(true)
  if (err !== 0) throw new Error(`cannot hand the socket to zfs send (setBlocking: ${err})`)
  let idle = false
  let stop = () => {}
  let child: Child
  try {
    child = lease.start(h.fd)
  } catch (e) {
    h.setBlocking!(false)
    throw e
  }
  if (child.stdout) {
    // A lease that could not hand the socket on (a test double's stream): its bytes go through us.
    h.setBlocking!(false)
    h.readStart?.()
    return sendPiped(d, ctx, lease, child, idleMs)
  }
  try {
    stop = followChild(child, idleMs, d.onSentBytes, () => {
      idle = true
      d.log.warn({ snapshot: lease.snapshot, idleMs, path: ctx.req.url }, 'download client took no bytes for the idle timeout; cutting it')
      child.kill()
    })
    // A client gone shows as zfs send failing to write (EPIPE/ECONNRESET): Node is not reading the socket.
    return await outcome(d, lease, child, () => idle)
  } finally {
    stop()
    h.setBlocking!(false) // before Node writes, ends or resets it
  }
}

/**
 * Through us, for sockets a child cannot write into or a reset cannot cut
 * (a unix socket: chunked, the 200 sent once zfs has produced bytes, as
 * before): backpressure by pipe(), idle by 'drain', bytes by a counter.
 */
async function sendPiped(d: RouteDeps, ctx: Koa.Context, lease: Lease, child: Child, idleMs: number): Promise<boolean> {
  const { res } = ctx
  const out = child.stdout!
  if (!res.headersSent) {
    const head = await firstChunk(out)
    if (head === null) {
      await child.done // no byte and no error would be an empty stream: say so
      throw new Error(`zfs send ${lease.snapshot} produced no data`)
    }
    res.writeHead(200, headersOf(lease))
    d.onSentBytes?.(head.byteLength)
    res.write(head)
  }
  let gone = false
  const stopWatch = watchIdle(res, idleMs, () => {
    d.log.warn({ snapshot: lease.snapshot, idleMs, path: ctx.req.url }, 'download client took no bytes for the idle timeout; cutting it')
    gone = true
    res.destroy() // 'close' → release(): zfs send killed, hold dropped
  })
  const counter = d.onSentBytes ? countingStream(d.onSentBytes) : undefined
  // A client gone must free zfs send's stdout: a counter left full would hold it, and with it the lease.
  res.on('close', () => { if (!res.writableFinished) { gone = true; counter?.destroy() } })
  // end:false: stdout's EOF is not success; zfs's exit status is.
  ;(counter ? out.pipe(counter) : out).pipe(res, { end: false })
  try {
    const ok = await outcome(d, lease, child, () => gone)
    if (ok && counter) await finished(counter) // its last bytes reach res before res ends
    return ok
  } finally {
    stopWatch()
  }
}
