/** Configuration: flags, then environment (the unit's EnvironmentFile), then defaults; flags win so one setting can be overridden by hand. */
import { parseArgs } from 'node:util'
import { createSourcePolicy, splitAllowList } from '../common/address-policy.js'
import { parseMetadataUrl } from './store/open-records.js'
import { parseBlobsUrl } from './store/blobs-url.js'

export interface Config {
  /** Native (mistify) API port; 0 picks a free port. */
  port: number
  /** Glance API port; 0 disables it. */
  glancePort: number
  /** Address both APIs listen on. There is no auth, hence loopback by default. */
  listen: string
  dataDir: string
  maxUploadSize: number
  /** Abort a URL fetch when the source is silent this long. */
  fetchTimeoutMs: number
  /** Drop client connections idle this long (a stalled upload ends as `error`). */
  idleTimeoutMs: number
  /** How often a running fetch persists its `size`. */
  progressIntervalMs: number
  /**
   * Hosts, addresses and CIDRs a fetch-from-URL may reach although they are
   * loopback, link-local or private (denied by default: the service would
   * store and re-serve what only this host can reach).
   */
  allowSourceHosts: string[]
  /** false: POST /images (fetch from a URL) is refused; uploads still work. */
  urlSources: boolean
  /** Where image records live: `level` (under dataDir) or `etcd://host:port,…[/prefix]` (shared by replicas). */
  metadata: string
  /** etcd only: TTL of a replica's transfer lease (s); a dead replica's uploads are marked `error` this long after it died. */
  metadataLeaseTtlS: number
  /** Where image bytes live: `dir` (under dataDir) or an s3:// URL (store/open-blobs.ts). */
  blobs: string
  /** true: /images/<id>/download redirects to the immutable /blobs/sha256/<hex> (for a cache in front). */
  downloadRedirect: boolean
}

export const DEFAULTS: Config = {
  port: 20000,
  glancePort: 9292,
  listen: '127.0.0.1',
  dataDir: '/var/lib/mistify-image-service',
  maxUploadSize: 64 * 1024 ** 3,
  fetchTimeoutMs: 60_000,
  idleTimeoutMs: 120_000,
  progressIntervalMs: 5_000,
  allowSourceHosts: [],
  urlSources: true,
  metadata: 'level',
  metadataLeaseTtlS: 5,
  blobs: 'dir',
  downloadRedirect: false,
}

export const USAGE = `Usage: mistify-image-service [options]

  -a, --port <n>             native API port (default 20000; env MISTIFY_IMAGE_SERVICE_PORT)
      --glance-port <n>      OpenStack Image API v2 port, 0 disables (default 9292; env MISTIFY_IMAGE_SERVICE_GLANCE_PORT)
      --listen <addr>        listen address (default 127.0.0.1; env MISTIFY_IMAGE_SERVICE_LISTEN)
      --data-dir <dir>       images and metadata (default /var/lib/mistify-image-service; env MISTIFY_IMAGE_SERVICE_DATA_DIR)
      --max-upload-size <n>  largest image, bytes or with K/M/G/T suffix (default 64G; env MISTIFY_IMAGE_SERVICE_MAX_UPLOAD_SIZE)
      --fetch-timeout <s>    URL fetch idle timeout in seconds (default 60; env MISTIFY_IMAGE_SERVICE_FETCH_TIMEOUT)
      --idle-timeout <s>     client connection idle timeout in seconds (default 120; env MISTIFY_IMAGE_SERVICE_IDLE_TIMEOUT)
      --allow-source-hosts <list>  hosts, addresses or CIDRs (comma-separated) URL fetches may reach although
                             loopback, link-local or private (default none; env MISTIFY_IMAGE_SERVICE_ALLOW_SOURCE_HOSTS)
      --url-sources on|off   off refuses fetch-from-URL (POST /images) (default on; env MISTIFY_IMAGE_SERVICE_URL_SOURCES)
      --metadata <url>       image records: level (default, under --data-dir) or etcd://host:port[,host:port…][/prefix]
                             (etcd v3, plain http; prefix default /lochness; records shared by several replicas)
                             (env MISTIFY_IMAGE_SERVICE_METADATA)
      --metadata-lease-ttl <s>  etcd: a dead replica's transfers are marked error after this long (default 5;
                             env MISTIFY_IMAGE_SERVICE_METADATA_LEASE_TTL)
      --blobs <url>          where image bytes live: dir (under --data-dir) or
                             s3://bucket[/prefix]?endpoint=http://host:port&region=r, with credentials from env
                             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (default dir; env MISTIFY_IMAGE_SERVICE_BLOBS)
      --download-redirect on|off  on: /images/<id>/download answers 302 to the immutable /blobs/sha256/<hex>,
                             so an HTTP cache in front of replicas serves the bytes (default off;
                             env MISTIFY_IMAGE_SERVICE_DOWNLOAD_REDIRECT)
  -h, --help                 this text
`

export class UsageError extends Error {
  override name = 'UsageError'
}

function port(name: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new UsageError(`${name}: not a port number: ${JSON.stringify(v)}`)
  return Number(v)
}

/** "64G", "512M", "1000" → bytes (binary multiples). */
export function parseSize(name: string, v: string): number {
  const m = /^(\d+)\s*([KMGT]?)i?B?$/i.exec(v.trim())
  if (!m) throw new UsageError(`${name}: not a size: ${JSON.stringify(v)}`)
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T']
  const n = Number(m[1]) * mult
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${name}: size out of range: ${JSON.stringify(v)}`)
  return n
}

function seconds(name: string, v: string): number {
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) <= 0) throw new UsageError(`${name}: not a positive number of seconds: ${JSON.stringify(v)}`)
  return Math.round(Number(v) * 1000)
}

/** Returns the config, or 'help' when --help was given. Throws UsageError on bad input. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Config | 'help' {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string', short: 'a' },
        'glance-port': { type: 'string' },
        listen: { type: 'string' },
        'data-dir': { type: 'string' },
        'max-upload-size': { type: 'string' },
        'fetch-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'allow-source-hosts': { type: 'string' },
        'url-sources': { type: 'string' },
        metadata: { type: 'string' },
        'metadata-lease-ttl': { type: 'string' },
        blobs: { type: 'string' },
        'download-redirect': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
  const f = parsed.values
  if (f.help) return 'help'
  // An empty env value (e.g. a commented default left blank) means "unset".
  const pick = (flag: string | undefined, key: string): string | undefined => flag ?? (env[`MISTIFY_IMAGE_SERVICE_${key}`] || undefined)
  const c: Config = { ...DEFAULTS }
  const v = {
    port: pick(f.port, 'PORT'),
    glancePort: pick(f['glance-port'], 'GLANCE_PORT'),
    listen: pick(f.listen, 'LISTEN'),
    dataDir: pick(f['data-dir'], 'DATA_DIR'),
    maxUploadSize: pick(f['max-upload-size'], 'MAX_UPLOAD_SIZE'),
    fetchTimeout: pick(f['fetch-timeout'], 'FETCH_TIMEOUT'),
    idleTimeout: pick(f['idle-timeout'], 'IDLE_TIMEOUT'),
    allowSourceHosts: pick(f['allow-source-hosts'], 'ALLOW_SOURCE_HOSTS'),
    urlSources: pick(f['url-sources'], 'URL_SOURCES'),
    metadata: pick(f.metadata, 'METADATA'),
    leaseTtl: pick(f['metadata-lease-ttl'], 'METADATA_LEASE_TTL'),
    blobs: pick(f.blobs, 'BLOBS'),
    downloadRedirect: pick(f['download-redirect'], 'DOWNLOAD_REDIRECT'),
  }
  if (v.port !== undefined) c.port = port('--port', v.port)
  if (v.glancePort !== undefined) c.glancePort = port('--glance-port', v.glancePort)
  if (v.listen !== undefined) c.listen = v.listen
  if (v.dataDir !== undefined) c.dataDir = v.dataDir
  if (v.maxUploadSize !== undefined) c.maxUploadSize = parseSize('--max-upload-size', v.maxUploadSize)
  if (v.fetchTimeout !== undefined) c.fetchTimeoutMs = seconds('--fetch-timeout', v.fetchTimeout)
  if (v.idleTimeout !== undefined) c.idleTimeoutMs = seconds('--idle-timeout', v.idleTimeout)
  if (v.allowSourceHosts !== undefined) {
    c.allowSourceHosts = splitAllowList(v.allowSourceHosts)
    try { createSourcePolicy({ allow: c.allowSourceHosts }) } catch (e) { throw new UsageError(`--allow-source-hosts: ${(e as Error).message}`) }
  }
  if (v.urlSources !== undefined) {
    if (v.urlSources !== 'on' && v.urlSources !== 'off') throw new UsageError(`--url-sources: on or off, got ${JSON.stringify(v.urlSources)}`)
    c.urlSources = v.urlSources === 'on'
  }
  if (v.metadata !== undefined) {
    if (!parseMetadataUrl(v.metadata)) throw new UsageError(`--metadata: level or etcd://host:port[,host:port…][/prefix], got ${JSON.stringify(v.metadata)}`)
    c.metadata = v.metadata
  }
  if (v.leaseTtl !== undefined) {
    if (!/^\d+$/.test(v.leaseTtl) || Number(v.leaseTtl) < 1) throw new UsageError(`--metadata-lease-ttl: whole seconds, at least 1, got ${JSON.stringify(v.leaseTtl)}`)
    c.metadataLeaseTtlS = Number(v.leaseTtl)
  }
  if (v.downloadRedirect !== undefined) {
    if (v.downloadRedirect !== 'on' && v.downloadRedirect !== 'off') throw new UsageError(`--download-redirect: on or off, got ${JSON.stringify(v.downloadRedirect)}`)
    c.downloadRedirect = v.downloadRedirect === 'on'
  }
  if (v.blobs !== undefined) {
    try { parseBlobsUrl(v.blobs) } catch (e) { throw new UsageError(`--blobs: ${(e as Error).message}`) }
    c.blobs = v.blobs
  }
  if (c.dataDir === '') throw new UsageError('--data-dir must not be empty')
  return c
}
