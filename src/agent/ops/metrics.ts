/**
 * The agent's Prometheus metrics, on a registry of their own (no globals, so
 * tests and several agents in one process do not collide). Label values are
 * bounded: RPC methods are the canonical names of the method table, outcomes
 * are `ok` or an error code, zfs commands are their subcommand.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { AgentError } from '../errors.js'
import { ZfsError } from '../../zfs/errors.js'

export interface FetchQueueSize { readonly running: number; readonly waiting: number }

export interface Metrics {
  readonly registry: Registry
  readonly rpcRequests: Counter<'method' | 'outcome'>
  readonly rpcDuration: Histogram<'method' | 'outcome'>
  readonly fetchQueue: Gauge<'state'>
  /** Bytes of zfs send streams fed into `zfs receive` by image imports. */
  readonly bytesImported: Counter
  /** Body bytes written by /snapshots/download. */
  readonly bytesSent: Counter
  readonly zfsDuration: Histogram<'bin' | 'command' | 'outcome'>
  readonly zfsFailures: Counter<'bin' | 'command' | 'kind'>
  readonly httpRequests: Counter<'route' | 'status'>
  /** One RPC call, as the app's method wrapper reports it. */
  observeRpc(method: string, outcome: string, seconds: number): void
  /** Add n bytes imported (the injectable callback for the fetch path). */
  onImportBytes(n: number): void
  /** Add n bytes sent by a download. */
  onSentBytes(n: number): void
}

/** `ok`, or the error's code/kind: a small fixed set. */
export function outcomeOf(err: unknown): string {
  if (err === undefined) return 'ok'
  if (err instanceof AgentError) return err.code
  if (err instanceof ZfsError) return `zfs_${err.kind}`
  return 'internal'
}

/** `fetchQueue`: where the queue gauge reads from at scrape time (the agent's fetch queue). */
export function createMetrics(o: { defaultMetrics?: boolean; prefix?: string; fetchQueue?: () => FetchQueueSize } = {}): Metrics {
  const registry = new Registry()
  const p = o.prefix ?? 'mistify_'
  const readQueue = o.fetchQueue ?? (() => ({ running: 0, waiting: 0 }))
  const rpcRequests = new Counter({ name: `${p}rpc_requests_total`, help: 'JSON-RPC calls by method and outcome (ok or error code)', labelNames: ['method', 'outcome'] as const, registers: [registry] })
  const rpcDuration = new Histogram({
    name: `${p}rpc_duration_seconds`, help: 'JSON-RPC call latency by method and outcome', labelNames: ['method', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [registry],
  })
  const fetchQueue = new Gauge({
    name: `${p}fetch_queue`, help: 'Image fetches running and waiting for a slot', labelNames: ['state'] as const, registers: [registry],
    collect() {
      const s = readQueue()
      this.set({ state: 'running' }, s.running)
      this.set({ state: 'waiting' }, s.waiting)
    },
  })
  const bytesImported = new Counter({ name: `${p}import_bytes_total`, help: 'Bytes of image streams received into ZFS', registers: [registry] })
  const bytesSent = new Counter({ name: `${p}download_bytes_total`, help: 'Bytes of snapshot streams sent by /snapshots/download', registers: [registry] })
  const zfsDuration = new Histogram({
    name: `${p}zfs_command_duration_seconds`, help: 'zfs/zpool command durations by subcommand and outcome', labelNames: ['bin', 'command', 'outcome'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800], registers: [registry],
  })
  const zfsFailures = new Counter({ name: `${p}zfs_command_failures_total`, help: 'Failed zfs/zpool commands by subcommand and error kind', labelNames: ['bin', 'command', 'kind'] as const, registers: [registry] })
  const httpRequests = new Counter({ name: `${p}http_requests_total`, help: 'HTTP requests by route and status', labelNames: ['route', 'status'] as const, registers: [registry] })
  if (o.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: p })
  return {
    registry, rpcRequests, rpcDuration, fetchQueue, bytesImported, bytesSent, zfsDuration, zfsFailures, httpRequests,
    observeRpc(method, outcome, seconds) {
      rpcRequests.inc({ method, outcome })
      rpcDuration.observe({ method, outcome }, seconds)
    },
    onImportBytes(n) { if (n > 0) bytesImported.inc(n) },
    onSentBytes(n) { if (n > 0) bytesSent.inc(n) },
  }
}
