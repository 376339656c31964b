/** /snapshots/download: `zfs send` of a held snapshot streamed to the client (README: "Downloading snapshots"). */
import type Koa from 'koa'
import type { Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { countingStream } from '../../common/counting.js'
import type { ServerResponse } from 'node:http'
import { InvalidParamsError } from '../errors.js'
import { BodyTooLarge, readBody } from '../../common/body.js'
import { wireError } from '../rpc/error-codes.js'
import { decodeDownloadRequest } from '../rpc/requests.js'
import type { Logger } from '../../common/log.js'
import type { createDownloadService, DownloadRequest, Probe } from '../services/downloads.js'

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
    id: one('id'), from: one('from'), token: one('token'),
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

export function snapshotDownload(d: { downloads: Downloads; log: Logger; onSentBytes?: ((n: number) => void) | undefined }, requestOf: RequestReader): Koa.Middleware {
  const idleMs = d.downloads.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
  return async (ctx) => {
    ctx.respond = false // we drive the raw response: Koa must not end it for us
    const { req, res } = ctx
    let clientGone = false
    res.on('close', () => { if (!res.writableFinished) clientGone = true })
    let release: (() => Promise<void>) | undefined
    let stopWatch: (() => void) | undefined
    try {
      if (ctx.method === 'HEAD') {
        const p = await d.downloads.describe(await requestOf(ctx))
        res.writeHead(200, headersOf(p))
        res.end()
        return
      }
      const lease = await d.downloads.open(await requestOf(ctx))
      release = lease.release
      // Client gone: kill zfs send and drop the hold, whatever stage we are in.
      res.on('close', () => { if (!res.writableFinished) void lease.release() })
      if (clientGone) throw new Error('client went away')
      const out = lease.child.stdout!
      const head = await firstChunk(out)
      if (head === null) {
        await lease.child.done // no byte and no error would be an empty stream: say so below
        throw new Error(`zfs send ${lease.snapshot} produced no data`)
      }
      res.writeHead(200, headersOf(lease))
      stopWatch = watchIdle(res, idleMs, () => {
        d.log.warn({ snapshot: lease.snapshot, idleMs, path: req.url }, 'download client took no bytes for the idle timeout; cutting it')
        res.destroy() // 'close' → release(): zfs send killed, hold dropped
      })
      d.onSentBytes?.(head.byteLength)
      res.write(head)
      // end:false: stdout's EOF is not success; zfs's exit status is.
      const counter = d.onSentBytes ? countingStream(d.onSentBytes) : undefined
      // A client gone must free zfs send's stdout: a counter left full would hold it, and with it the lease.
      if (counter) res.on('close', () => { if (!res.writableFinished) counter.destroy() })
      const body: Readable = counter ? out.pipe(counter) : out
      body.pipe(res, { end: false })
      try {
        await lease.child.done
        if (counter) await finished(counter) // its last bytes reach res before res ends
        res.end()
      } catch (e) {
        if (!clientGone) d.log.error({ snapshot: lease.snapshot, err: (e as Error).message }, 'zfs send failed mid-stream; cutting the response')
        res.destroy(e as Error)
      }
    } catch (e) {
      if (res.headersSent) { res.destroy(); return }
      if (clientGone) return
      const w = wireError(e, '1.0') // operators read these: zfs's own words, as the original
      if (w.httpStatus >= 500) d.log.error({ err: (e as Error).message, path: req.url }, 'download failed')
      sendText(res, w.httpStatus, w.message)
    } finally {
      stopWatch?.()
      await release?.()
    }
  }
}
