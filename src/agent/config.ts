/**
 * Agent configuration from flags, environment, an optional JSON config file
 * and defaults (in that order of precedence), validated up front so a bad
 * value stops start-up with a clear message instead of failing on the first
 * request.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { assertPoolName } from '../zfs/names.js'
import { createSourcePolicy, splitAllowList } from '../common/address-policy.js'
import { readTokenFile as readToken } from '../common/token-file.js'

export interface Config {
  /** The pool whose images/ and guests/ trees this agent owns. */
  readonly zpool: string
  readonly listen: string
  readonly port: number
  /**
   * Base URL of the image service, e.g. http://images.example:20000; or
   * several replicas of it, comma-separated (normalised here; split with
   * imageServers()). A fetch fails over from one to the next.
   */
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
  /** When set, every route but /healthz needs `Authorization: Bearer <token>`. */
  readonly token?: string
  /** Listen on this unix socket instead of TCP (listen/port are then unused). */
  readonly socket?: string
  /**
   * The only directory RequestImage may read file:// sources from. Unset,
   * file:// is refused: the agent runs as root, and any file it imports
   * becomes a disk a guest can read.
   */
  readonly fileSources?: string
  /**
   * Largest image, counted on the decoded bytes (after gunzip) for every
   * format, and on a qcow2's virtual size. Temporary zvols are made this big.
   */
  readonly maxImageBytes: number
  /**
   * Most increments one RequestImage fetches to reach an image from a version
   * this agent holds (image versions as zfs increments); 0: always the full stream.
   */
  readonly incrementDepth: number
  /** When set, start-up sets this quota (bytes) on <pool>/images: imports can never fill the pool under the guests. */
  readonly imagesQuota?: number
  /**
   * Accept an image from the configured image service that publishes no
   * sha256 (the Go mistify-image-service publishes none). Off: fail closed.
   */
  readonly acceptUndigestedImages: boolean
  /**
   * A file holding the token (read once at start, one trailing newline
   * dropped): `--token` shows in `ps`, a file does not. Not with `token`.
   */
  readonly tokenFile?: string
  /**
   * Host header names accepted besides IP literals, `localhost` and the
   * machine's hostname (a DNS-rebinding page sends its own name); `*`: any.
   */
  readonly allowedHosts?: readonly string[]
  /** Snapshot downloads running at once, all snapshots together; past that 503. */
  readonly maxDownloads: number
  /** A download whose client has taken no bytes for this long is cut (its zfs send killed, its hold released). */
  readonly downloadIdleTimeoutMs: number
  /**
   * Hosts, addresses and CIDRs that http(s) sources may name although they
   * are loopback, link-local or private (denied by default: the agent would
   * fetch, store and serve back what only this host can reach). The image
   * service (`imageServer`) is always allowed.
   */
  readonly allowSourceHosts: readonly string[]
  /** 'off': RequestImage takes no http(s) `source`; images come from the image service only. */
  readonly urlSources: 'on' | 'off'
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
  maxImageBytes: 256 * 2 ** 30,
  incrementDepth: 8,
  acceptUndigestedImages: false,
  maxDownloads: 16,
  downloadIdleTimeoutMs: 60_000,
  allowSourceHosts: [],
  urlSources: 'on',
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
  ['token', '--token', undefined, 'MISTIFY_TOKEN'],
  ['socket', '--socket', undefined, 'MISTIFY_SOCKET'],
  ['fileSources', '--file-sources', undefined, 'MISTIFY_FILE_SOURCES'],
  ['maxImageBytes', '--max-image-size', undefined, 'MISTIFY_MAX_IMAGE_SIZE'],
  ['incrementDepth', '--increment-depth', undefined, 'MISTIFY_INCREMENT_DEPTH'],
  ['imagesQuota', '--images-quota', undefined, 'MISTIFY_IMAGES_QUOTA'],
  ['acceptUndigestedImages', '--accept-undigested-images', undefined, 'MISTIFY_ACCEPT_UNDIGESTED_IMAGES'],
  ['tokenFile', '--token-file', undefined, 'MISTIFY_TOKEN_FILE'],
  ['allowedHosts', '--allowed-hosts', undefined, 'MISTIFY_ALLOWED_HOSTS'],
  ['maxDownloads', '--max-downloads', undefined, 'MISTIFY_MAX_DOWNLOADS'],
  ['downloadIdleTimeoutMs', '--download-idle-timeout-ms', undefined, 'MISTIFY_DOWNLOAD_IDLE_TIMEOUT_MS'],
  ['allowSourceHosts', '--allow-source-hosts', undefined, 'MISTIFY_ALLOW_SOURCE_HOSTS'],
  ['urlSources', '--url-sources', undefined, 'MISTIFY_URL_SOURCES'],
]

const CONFIG_FLAG = '--config'
const CONFIG_ENV = 'MISTIFY_CONFIG'

const NUMERIC = new Set<keyof Config>(['port', 'fetchers', 'maxPending', 'fetchIdleTimeoutMs', 'zfsTimeoutMs', 'maxDownloads', 'downloadIdleTimeoutMs', 'incrementDepth'])
/** Byte counts: a whole number with an optional K, M, G or T (powers of 1024). */
const SIZES = new Set<keyof Config>(['maxImageBytes', 'imagesQuota'])
const BOOLEANS = new Set<keyof Config>(['acceptUndigestedImages'])

export function parseSize(key: string, value: string): number {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(value.trim())
  const n = m ? Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()) : NaN
  if (!Number.isSafeInteger(n) || n <= 0) throw new ConfigError(`${key}: expected a size in bytes (e.g. 68719476736 or 64G), got ${JSON.stringify(value)}`)
  return n
}

export function parseBoolean(key: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true
  if (/^(0|false|no|off)$/i.test(value)) return false
  throw new ConfigError(`${key}: expected true or false, got ${JSON.stringify(value)}`)
}

/** Comma-separated on the command line and in the environment, a JSON array of strings in the file. */
/** How a list setting given as one string (flag, environment; `words` also in the file) is split. */
const LISTS: Partial<Record<keyof Config, (v: string) => string[]>> = {
  allowedHosts: (v) => v.split(',').map((x) => x.trim()).filter(Boolean),
  allowSourceHosts: splitAllowList,
}

/**
 * One or more image service replicas, comma-separated (or a config file's
 * array), each normalised; a single one comes back exactly as before.
 */
export function normaliseImageServers(v: string | readonly string[]): string {
  const each = (typeof v === 'string' ? v.split(',') : v).map((x) => x.trim()).filter((x) => x !== '')
  if (each.length === 0) throw new ConfigError('image service: no host or URL given')
  const urls = each.map(normaliseImageServer)
  const twice = urls.find((u, i) => urls.indexOf(u) !== i)
  if (twice !== undefined) throw new ConfigError(`image service: ${twice} is listed twice`)
  return urls.join(',')
}

/** The replicas of a normalised `imageServer` (see normaliseImageServers), in the order configured. */
export function imageServers(imageServer: string): string[] {
  return imageServer.split(',').filter((x) => x !== '')
}

/** `host`, `host:port` or a URL; a bare host gets the image service's default port. */
export function normaliseImageServer(v: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`
  let u: URL
  try { u = new URL(withScheme) } catch { throw new ConfigError(`image service: not a host or URL: ${JSON.stringify(v)}`) }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`image service: only http(s), got ${u.protocol}`)
  if (!u.port && !/^[a-z]+:\/\//i.test(v)) u.port = '20000'
  return u.toString().replace(/\/$/, '')
}

/** Keys a config file may hold, and the JSON type each must have. */
const FILE_KEYS: Readonly<Record<keyof Config, 'string' | 'integer' | 'boolean' | 'list' | 'words' | 'urls'>> = {
  zpool: 'string', listen: 'string', port: 'integer', imageServer: 'urls', metadataDir: 'string',
  fetchers: 'integer', maxPending: 'integer', fetchIdleTimeoutMs: 'integer', zfsTimeoutMs: 'integer',
  token: 'string', socket: 'string', fileSources: 'string',
  maxImageBytes: 'integer', incrementDepth: 'integer', imagesQuota: 'integer', acceptUndigestedImages: 'boolean',
  tokenFile: 'string', allowedHosts: 'list', maxDownloads: 'integer', downloadIdleTimeoutMs: 'integer',
  allowSourceHosts: 'words', urlSources: 'string',
}

const WANTED = {
  integer: 'a whole number', string: 'a string', boolean: 'true or false', list: 'an array of strings',
  words: 'an array of strings (or one comma-separated string)', urls: 'a string or an array of strings',
} as const

/**
 * A JSON config file: one object with Config's keys (camelCase, as in
 * DEFAULTS). Unknown keys and values of the wrong type are refused, naming
 * the file and the key.
 */
export function parseConfigFile(text: string, file = 'config file'): Partial<Config> {
  let value: unknown
  try { value = JSON.parse(text) } catch (e) { throw new ConfigError(`${file}: not valid JSON: ${(e as Error).message}`) }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${file}: expected a JSON object of settings`)
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    if (!Object.hasOwn(FILE_KEYS, key)) {
      throw new ConfigError(`${file}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(FILE_KEYS).join(', ')})`)
    }
    const want = FILE_KEYS[key as keyof Config]
    const fits = want === 'integer' ? typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
      : want === 'list' || want === 'words' || want === 'urls' ? (want !== 'list' && typeof v === 'string') || (Array.isArray(v) && v.every((x) => typeof x === 'string'))
        : typeof v === want
    if (!fits) throw new ConfigError(`${file}: ${key}: expected ${WANTED[want]}, got ${JSON.stringify(v)}`)
    out[key] = typeof v === 'string' && want === 'words' ? splitAllowList(v)
      // An array of replicas becomes the comma-separated form the flag takes (checked with the rest below).
      : want === 'urls' && Array.isArray(v) ? v.join(',') : v
  }
  return out as Partial<Config>
}

export function readConfigFile(path: string): Partial<Config> {
  let text: string
  try { text = readFileSync(path, 'utf8') } catch (e) { throw new ConfigError(`config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`) }
  return parseConfigFile(text, `config file ${path}`)
}

export function readTokenFile(path: string): string {
  try {
    return readToken(path)
  } catch (e) {
    throw new ConfigError(`token file ${path}: ${(e as Error).message}`)
  }
}

/** For node:util parseArgs: every flag takes a value. */
const PARSE_OPTIONS = Object.fromEntries([CONFIG_FLAG, ...OPTIONS.map((o) => o[1])].map((long) => {
  const short = OPTIONS.find((o) => o[1] === long)?.[2]
  return [long.slice(2), { type: 'string' as const, ...(short ? { short: short.slice(1) } : {}) }]
}))

/** `--help` / `-h` anywhere: print usage() and exit 0 instead of starting. */
export const wantsHelp = (argv: readonly string[]): boolean => argv.some((a) => a === '--help' || a === '-h')

/** Every flag, its environment variable and its default (the README's Configuration table has what each does). */
export function usage(): string {
  const rows = [[`${CONFIG_FLAG} FILE`, CONFIG_ENV, ''], ...OPTIONS.map(([key, long, short, envName]) => {
    const d = DEFAULTS[key]
    return [`${short ? `${short}, ` : ''}${long}`, envName, d === undefined || (Array.isArray(d) && d.length === 0) ? '' : `default ${Array.isArray(d) ? d.join(',') : String(d)}`]
  })]
  const w0 = Math.max(...rows.map((r) => r[0]!.length))
  const w1 = Math.max(...rows.map((r) => r[1]!.length))
  return ['usage: mistify-agent-image [options]   (flags > environment > config file > defaults)', '',
    ...rows.map(([a, b, c]) => `  ${a!.padEnd(w0)}  ${b!.padEnd(w1)}  ${c}`.trimEnd()), ''].join('\n')
}

const OPTION_NAMES = () => [CONFIG_FLAG, ...OPTIONS.map((o) => o[1])].join(' ')

/**
 * Flags > environment > config file (--config / MISTIFY_CONFIG) > defaults.
 * `readFile` is for tests.
 */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv, readFile: (path: string) => Partial<Config> = readConfigFile): Config {
  const raw: Partial<Record<keyof Config, string>> = {}
  let configFile = env[CONFIG_ENV] || undefined
  for (const [key, , , envName] of OPTIONS) if (env[envName] !== undefined && env[envName] !== '') raw[key] = env[envName]
  // Not strict: the tokens are checked here, so that the messages stay ours (and name the whole argument).
  const { tokens } = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: false, allowPositionals: true, tokens: true })
  for (const tok of tokens) {
    const opt = tok.kind === 'option' ? OPTIONS.find(([, long]) => long === `--${tok.name}`) : undefined
    if (tok.kind !== 'option' || (!opt && `--${tok.name}` !== CONFIG_FLAG)) throw new ConfigError(`unknown option ${argv[tok.index]} (options: ${OPTION_NAMES()})`)
    if (tok.value === undefined) throw new ConfigError(`${tok.rawName} needs a value`)
    if (opt) raw[opt[0]] = tok.value
    else configFile = tok.value
  }
  const out: Record<string, unknown> = { ...DEFAULTS, ...(configFile ? readFile(configFile) : {}) }
  for (const [key, value] of Object.entries(raw) as Array<[keyof Config, string]>) {
    if (NUMERIC.has(key)) {
      const n = Number(value)
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new ConfigError(`${key}: expected a whole number, got ${JSON.stringify(value)}`)
      out[key] = n
    } else if (SIZES.has(key)) out[key] = parseSize(key, value)
    else if (BOOLEANS.has(key)) out[key] = parseBoolean(key, value)
    else if (LISTS[key]) out[key] = LISTS[key](value)
    else out[key] = value
  }
  // An empty token, socket or file-sources (e.g. "" in the file) means "not set".
  for (const k of ['token', 'socket', 'fileSources', 'tokenFile'] as const) if (out[k] === '') delete out[k]
  const c = out as unknown as Config
  try { assertPoolName(c.zpool) } catch (e) { throw new ConfigError(`zpool: ${(e as Error).message}`) }
  if (c.port > 65535) throw new ConfigError(`port: ${c.port} is not a TCP port`)
  if (c.fetchers < 1) throw new ConfigError('fetchers: at least 1')
  if (!c.metadataDir) throw new ConfigError('metadata-dir: empty')
  if (c.token !== undefined && /\s/.test(c.token)) throw new ConfigError('token: must not contain whitespace')
  if (c.fileSources !== undefined && !c.fileSources.startsWith('/')) throw new ConfigError('file-sources: an absolute directory')
  if (!(c.maxImageBytes > 0)) throw new ConfigError('max-image-size: more than 0 bytes')
  if (c.incrementDepth > 64) throw new ConfigError('increment-depth: at most 64')
  if (c.imagesQuota !== undefined && !(c.imagesQuota > 0)) throw new ConfigError('images-quota: more than 0 bytes')
  if (c.maxDownloads < 1) throw new ConfigError('max-downloads: at least 1')
  if (c.downloadIdleTimeoutMs < 1) throw new ConfigError('download-idle-timeout-ms: at least 1')
  for (const h of c.allowedHosts ?? []) {
    if (h !== '*' && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(h)) throw new ConfigError(`allowed-hosts: not a host name: ${JSON.stringify(h)}`)
  }
  if (c.urlSources !== 'on' && c.urlSources !== 'off') throw new ConfigError(`url-sources: on or off, got ${JSON.stringify(c.urlSources)}`)
  try { createSourcePolicy({ allow: c.allowSourceHosts }) } catch (e) { throw new ConfigError(`allow-source-hosts: ${(e as Error).message}`) }
  let token = c.token
  if (c.tokenFile !== undefined) {
    if (token !== undefined) throw new ConfigError('token and token-file: give one of them')
    token = readTokenFile(c.tokenFile)
  }
  return { ...c, ...(token === undefined ? {} : { token }), imageServer: normaliseImageServers(c.imageServer) }
}
