/** Reading a whole HTTP body (a request, or an answer), bounded. */
import type { IncomingMessage } from 'node:http'

export class BodyTooLarge extends Error {
  override name = 'BodyTooLarge'
  constructor(readonly limit: number) { super(`request body larger than ${limit} bytes`) }
}

/**
 * Read the whole body, up to `limit` bytes. Over the limit we stop keeping
 * data but keep draining (so an error can still be written) and the caller
 * should close the connection after its answer.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const cleanup = () => { req.off('data', onData); req.off('end', onEnd); req.off('error', onError); req.off('close', onClose) }
    const onData = (c: Buffer) => {
      size += c.length
      if (size > limit) { cleanup(); req.resume(); reject(new BodyTooLarge(limit)); return }
      chunks.push(c)
    }
    const onEnd = () => { cleanup(); resolve(Buffer.concat(chunks, size)) }
    const onError = (e: Error) => { cleanup(); reject(e) }
    // 'close' before 'end': the client hung up mid-body.
    const onClose = () => { cleanup(); reject(new Error('request closed before its end')) }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
  })
}
