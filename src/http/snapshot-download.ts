/**
 * /snapshots/download: stream `zfs send` of a snapshot to the client.
 *  - POST with the agent's JSON SnapshotRequest body, or GET ?id=…&recursive=1 for curl;
 *  - errors before the first byte get a real status and a plain-text body;
 *  - the 200 is only sent once zfs has produced bytes, and the response only
 *    ends cleanly once zfs has exited 0: a failure after that destroys the
 *    connection, so the chunked stream is visibly cut and curl exits non-zero
 *    (the original appended error text to a 200, its bug 11);
 *  - backpressure comes from pipe(); the child is killed when the client goes.
 */
import type Koa from 'koa'
import type { Readable } from 'node:stream'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { InvalidParamsError } from '../errors.js'
import { wireError } from '../rpc/error-codes.js'
import { decodeParams } from '../rpc/decode.js'
import { parseJson } from '../rpc/json.js'
import { SNAPSHOT_REQUEST } from '../rpc/methods.js'
import type { Zfs } from '../zfs/index.js'
import type { Logger } from '../log.js'
import type { createSnapshotService, SnapshotRequest } from '../services/snapshots.js'

export const DOWNLOAD_PATH = '/snapshots/download'
const MAX_BODY = 64 * 1024

type Snapshots = Pick<ReturnType<typeof createSnapshotService>, 'getSnapshot'>

async function readBody(req: IncomingMessage): Promise<string> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const c of req) {
    size += (c as Buffer).length
    if (size > MAX_BODY) throw new InvalidParamsError('request body too large')
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

async function requestOf(ctx: Koa.Context): Promise<SnapshotRequest> {
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    const q = ctx.query
    const flag = (v: unknown) => v === '1' || v === 'true'
    return { id: typeof q.id === 'string' ? q.id : '', dest: '', recursive: flag(q.recursive), destroyMoreRecent: false }
  }
  const value = parseJson(await readBody(ctx.req))
  return decodeParams(value, SNAPSHOT_REQUEST) as unknown as SnapshotRequest
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

export function snapshotDownload(d: { snapshots: Snapshots; zfs: Zfs; log: Logger }): Koa.Middleware {
  return async (ctx, next) => {
    if (ctx.path !== DOWNLOAD_PATH) return next()
    ctx.respond = false // we drive the raw response: Koa must not end it for us
    const { req, res } = ctx
    let clientGone = false
    res.on('close', () => { if (!res.writableFinished) clientGone = true })
    try {
      const p = await requestOf(ctx)
      const snap = await d.snapshots.getSnapshot(p.id)
      const child = d.zfs.send(snap.name, { replicate: p.recursive })
      const kill = () => child.kill()
      res.on('close', () => { if (!res.writableFinished) kill() })
      if (clientGone) kill()
      const out = child.stdout!
      const head = await firstChunk(out)
      if (head === null) {
        await child.done // no byte and no error would be an empty stream: say so below
        throw new Error(`zfs send ${snap.name} produced no data`)
      }
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Disposition': `attachment; filename="${snap.name.replace(/[/@]/g, '_')}.zfs"`,
        'X-Snapshot': snap.name,
      })
      res.write(head)
      // end:false: stdout's EOF is not success; zfs's exit status is.
      out.pipe(res, { end: false })
      try {
        await child.done
        res.end()
      } catch (e) {
        if (!clientGone) d.log.error({ snapshot: snap.name, err: (e as Error).message }, 'zfs send failed mid-stream; cutting the response')
        res.destroy(e as Error)
      }
    } catch (e) {
      if (res.headersSent) { res.destroy(); return }
      if (clientGone) return
      const w = wireError(e, '1.0') // operators read these: zfs's own words, as the original
      if (w.httpStatus >= 500) d.log.error({ err: (e as Error).message, path: req.url }, 'download failed')
      sendText(res, w.httpStatus, w.message)
    }
  }
}
