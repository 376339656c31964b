/** Errors a handler throws, answered with each API's own error body. */
import type Koa from 'koa'
import type { Logger } from '../../common/log.js'
import { RetryableError } from '../store/records.js'

/** An error that carries the status the API should answer with. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

/** How an API writes an error body (each API has its own shape). */
export type Fail = (ctx: Koa.Context, status: number, message: string) => void

export interface ErrorAnswers {
  /** Names the API in the log line of an unexpected error. */
  api: string
  log: Logger
  fail: Fail
  /** The message a 500 shows for an unexpected error. */
  internal: (err: unknown) => string
}

/** An HttpError becomes its status, a RetryableError 503; anything else is logged and becomes a 500. */
export function answerErrors(o: ErrorAnswers): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next()
    } catch (err) {
      if (err instanceof HttpError) {
        // The body may be unread (refused by its announced size): close rather than drain it.
        if (err.status === 413) ctx.set('Connection', 'close')
        o.fail(ctx, err.status, err.message)
        return
      }
      if (err instanceof RetryableError) {
        // Metadata store unreachable or a transfer's owner lost: nothing is half-written, try again.
        ctx.set('Retry-After', '1')
        o.fail(ctx, 503, err.message)
        return
      }
      o.log.error({ method: ctx.method, path: ctx.path, err: String(err) }, `${o.api} request failed`)
      o.fail(ctx, 500, o.internal(err))
    }
  }
}
