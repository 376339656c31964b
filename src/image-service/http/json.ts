/** JSON request bodies, read through the one bounded reader (common/body.ts). */
import type Koa from 'koa'
import { BodyTooLarge, readBody } from '../../common/body.js'
import { HttpError } from './errors.js'

/** Read and parse a JSON request body of at most `limit` bytes (413 past it, 400 when not JSON). */
export async function readJson(ctx: Koa.Context, limit = 1 << 20): Promise<unknown> {
  const tooLarge = (): HttpError => new HttpError(413, `request body exceeds ${limit} bytes`)
  // An announced size over the limit is refused before a byte is read.
  if (Number(ctx.get('content-length') || '0') > limit) throw tooLarge()
  let raw: Buffer
  try {
    raw = await readBody(ctx.req, limit)
  } catch (err) {
    throw err instanceof BodyTooLarge ? tooLarge() : err
  }
  try {
    return JSON.parse(raw.toString('utf8')) as unknown
  } catch (err) {
    throw new HttpError(400, err instanceof Error ? err.message : 'invalid JSON')
  }
}
