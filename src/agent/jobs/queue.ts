/**
 * The fetch queue: at most `concurrency` distinct images in flight, at most
 * `maxPending` waiting; past that a request is refused at once (BusyError)
 * rather than blocking its caller. Concurrent requests for one image share
 * one fetch. The only module that imports p-queue.
 */
import PQueue from 'p-queue'
import { BusyError } from '../errors.js'

export interface FetchQueue {
  /**
   * Run `task` for `key`, or join the run already under way for it.
   * `onQueued` is called (synchronously) only when a new run was accepted.
   * A refusal (queue full, or closed) throws BusyError synchronously, so a
   * caller that answers before the run ends knows it was not admitted.
   */
  run<T>(key: string, task: (signal: AbortSignal) => Promise<T>, onQueued?: () => void, place?: Place): Promise<T>
  /**
   * Take a waiting place now, for a run its caller starts later (a chain of
   * increments reads records first): it counts as waiting until a run
   * consumes it (that run is not refused) or it is given back. Refused as a
   * run would be (BusyError, synchronously).
   */
  hold(): Place
  /** Whether a run for `key` is waiting or under way. */
  has(key: string): boolean
  readonly size: { readonly running: number; readonly waiting: number }
  /** Refuse new work, abort what runs, answer waiting callers with 'fetcher quit'. */
  close(): Promise<void>
}

/** A waiting place taken by hold(); give() returns it if no run used it. Idempotent. */
export interface Place { give(): void }

export function createFetchQueue(o: { concurrency: number; maxPending: number }): FetchQueue {
  const queue = new PQueue({ concurrency: o.concurrency })
  const inflight = new Map<string, Promise<unknown>>()
  /** Callers whose task has not started yet; close() answers them. */
  const waiting = new Set<(e: Error) => void>()
  /** Places taken by hold() and not yet used or given back. */
  const held = new Set<Place>()
  const abort = new AbortController()
  let closed = false
  const refuseIfFull = () => {
    if (closed) throw new BusyError('fetcher quit')
    // Waiting for a slot that is free already is not waiting: only the excess counts against maxPending.
    const free = Math.max(0, o.concurrency - queue.pending)
    const queued = waiting.size + held.size
    if (queued >= o.maxPending + free) {
      throw new BusyError(`busy: ${queue.pending} fetches running and ${queued} waiting, try again later`)
    }
  }

  return {
    run<T>(key: string, task: (signal: AbortSignal) => Promise<T>, onQueued?: () => void, place?: Place): Promise<T> {
      if (closed) throw new BusyError('fetcher quit')
      const joined = inflight.get(key)
      if (joined) return joined as Promise<T>
      // A held place was admitted when it was taken; a used or given one admits nothing.
      if (!(place && held.delete(place))) refuseIfFull()
      const p = new Promise<T>((resolve, reject) => {
        const cancel = (e: Error) => reject(e)
        waiting.add(cancel)
        void queue.add(async () => {
          if (!waiting.delete(cancel)) return // answered by close() already
          try { resolve(await task(abort.signal)) } catch (e) { reject(e) }
        })
      })
      const tracked = p.finally(() => inflight.delete(key))
      inflight.set(key, tracked)
      onQueued?.()
      return tracked
    },
    hold() {
      refuseIfFull()
      const place: Place = { give: () => { held.delete(place) } }
      held.add(place)
      return place
    },
    has: (key) => inflight.has(key),
    get size() { return { running: queue.pending, waiting: waiting.size + held.size } },
    async close() {
      closed = true
      held.clear()
      for (const cancel of waiting) cancel(new BusyError('fetcher quit'))
      waiting.clear()
      abort.abort(new BusyError('fetcher quit'))
      await queue.onIdle()
    },
  }
}
