/**
 * Agent configuration from flags, environment and defaults (in that order of
 * precedence), validated up front so a bad value stops start-up with a clear
 * message instead of failing on the first request.
 */
import { assertPoolName } from './zfs/names.js'

export interface Config {
  /** The pool whose images/ and guests/ trees this agent owns. */
  readonly zpool: string
  readonly listen: string
  readonly port: number
  /** Base URL of the image service, e.g. http://images.example:20000 */
  readonly imageServer: string
  /** LevelDB directory for image records. */
  readonly metadataDir: string
  /** Distinct images fetched at once (the original's NumFetchers). */
  readonly fetchers: number
  /** Fetch requests allowed to wait for a slot before RequestImage answers busy. */
  readonly maxPending: number
  /** A fetch whose source sends nothing for this long fails. */
  readonly fetchIdleTimeoutMs: number
  /** Limit for one zfs/zpool command that is not a stream. */
  readonly zfsTimeoutMs: number
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export const DEFAULTS: Config = {
  zpool: 'mistify',
  listen: '127.0.0.1',
  port: 19999,
  imageServer: 'http://image.services.lochness.local:20000',
  metadataDir: '/var/lib/mistify-agent-image',
  fetchers: 2,
  maxPending: 32,
  fetchIdleTimeoutMs: 60_000,
  zfsTimeoutMs: 10 * 60_000,
}

/** flag (long, short) → key, and its environment variable. */
const OPTIONS: ReadonlyArray<readonly [keyof Config, string, string | undefined, string]> = [
  ['zpool', '--zpool', '-z', 'MISTIFY_ZPOOL'],
  ['listen', '--listen', '-l', 'MISTIFY_LISTEN'],
  ['port', '--port', '-p', 'MISTIFY_PORT'],
  ['imageServer', '--image-service', '-i', 'MISTIFY_IMAGE_SERVICE'],
  ['metadataDir', '--metadata-dir', undefined, 'MISTIFY_METADATA_DIR'],
  ['fetchers', '--fetchers', undefined, 'MISTIFY_FETCHERS'],
  ['maxPending', '--max-pending', undefined, 'MISTIFY_MAX_PENDING'],
  ['fetchIdleTimeoutMs', '--fetch-timeout-ms', undefined, 'MISTIFY_FETCH_TIMEOUT_MS'],
  ['zfsTimeoutMs', '--zfs-timeout-ms', undefined, 'MISTIFY_ZFS_TIMEOUT_MS'],
]

const NUMERIC = new Set<keyof Config>(['port', 'fetchers', 'maxPending', 'fetchIdleTimeoutMs', 'zfsTimeoutMs'])

/** `host`, `host:port` or a URL; a bare host gets the image service's default port. */
export function normaliseImageServer(v: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`
  let u: URL
  try { u = new URL(withScheme) } catch { throw new ConfigError(`image service: not a host or URL: ${JSON.stringify(v)}`) }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`image service: only http(s), got ${u.protocol}`)
  if (!u.port && !/^[a-z]+:\/\//i.test(v)) u.port = '20000'
  return u.toString().replace(/\/$/, '')
}

export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Config {
  const raw: Partial<Record<keyof Config, string>> = {}
  for (const [key, , , envName] of OPTIONS) if (env[envName] !== undefined && env[envName] !== '') raw[key] = env[envName]
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
    const opt = OPTIONS.find(([, long, short]) => flag === long || flag === short)
    if (!opt) throw new ConfigError(`unknown option ${a} (options: ${OPTIONS.map((o) => o[1]).join(' ')})`)
    const value = inline ?? argv[++i]
    if (value === undefined) throw new ConfigError(`${flag} needs a value`)
    raw[opt[0]] = value
  }
  const out: Record<string, unknown> = { ...DEFAULTS }
  for (const [key, value] of Object.entries(raw) as Array<[keyof Config, string]>) {
    if (NUMERIC.has(key)) {
      const n = Number(value)
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new ConfigError(`${key}: expected a whole number, got ${JSON.stringify(value)}`)
      out[key] = n
    } else out[key] = value
  }
  const c = out as unknown as Config
  try { assertPoolName(c.zpool) } catch (e) { throw new ConfigError(`zpool: ${(e as Error).message}`) }
  if (c.port > 65535) throw new ConfigError(`port: ${c.port} is not a TCP port`)
  if (c.fetchers < 1) throw new ConfigError('fetchers: at least 1')
  if (!c.metadataDir) throw new ConfigError('metadata-dir: empty')
  return { ...c, imageServer: normaliseImageServer(c.imageServer) }
}
