/** The CLI's flags (node:util parseArgs), environment and help text. */
import { parseArgs } from 'node:util'
import { readTokenFile as readToken, TokenFileError } from '../common/token-file.js'

export const DEFAULT_URL = 'http://127.0.0.1:19999'

export const HELP = `usage: mistify-image [--url URL] [--socket PATH] [--token TOKEN | --token-file FILE] [--json] COMMAND

commands:
  images list                      list images
  images show ID                   one image
  images fetch ID [--source URL --sha256 HEX] [--format zfs|raw|qcow2]
                                   fetch an image (default from the image service; waits until imported)
  images delete ID                 delete an image
  clone ID DEST                    clone an image into a guest disk (DEST e.g. guests/g1/disk-0)
  snapshot create ID NAME [-r]     snapshot dataset ID as ID@NAME (-r: with descendants)
  snapshot list [ID]               snapshots (under ID)
  snapshot rollback ID [--destroy-more-recent] [-r]
  snapshot delete ID [-r]
  download SNAPSHOT [-o FILE|-] [-r]
                                   stream zfs send of SNAPSHOT to FILE (or stdout)
  publish SNAPSHOT --name NAME [--version N] [--type kvm|container] [--image-service URL]
                                   upload SNAPSHOT as the next version of NAME, with the
                                   increment from the previous version when the agent holds it

options:
  --url URL        agent URL (env MISTIFY_URL; default ${DEFAULT_URL})
  --socket PATH    talk to the agent on a unix socket (env MISTIFY_SOCKET)
  --token TOKEN    bearer token (env MISTIFY_TOKEN; visible in ps: prefer --token-file)
  --token-file FILE  read the bearer token from FILE (env MISTIFY_TOKEN_FILE)
  --image-service URL  the image service publish uploads to (env MISTIFY_IMAGE_SERVICE)
  --json           machine-readable output (the RPC result as JSON)
  -h, --help       this help

exit codes: 0 ok, 1 the agent refused, 2 usage, 3 agent unreachable or transfer cut
`

/** A usage mistake: exit 2. */
export class UsageError extends Error {}

export interface Options {
  url: string
  socket: string | undefined
  token: string | undefined
  json: boolean
  help: boolean
  recursive: boolean
  destroyMoreRecent: boolean
  output: string | undefined
  source: string | undefined
  format: string | undefined
  sha256: string | undefined
  name: string | undefined
  version: number | undefined
  type: string
  imageService: string | undefined
  args: string[]
}

const FLAGS = {
  url: { type: 'string' }, socket: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' },
  json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, recursive: { type: 'boolean', short: 'r' },
  'destroy-more-recent': { type: 'boolean' }, output: { type: 'string', short: 'o' },
  source: { type: 'string' }, format: { type: 'string' }, sha256: { type: 'string' },
  name: { type: 'string' }, version: { type: 'string' }, type: { type: 'string' }, 'image-service': { type: 'string' },
} as const

type Flag = keyof typeof FLAGS

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): Options {
  const o: Options = {
    url: env.MISTIFY_URL || DEFAULT_URL, socket: env.MISTIFY_SOCKET || undefined, token: env.MISTIFY_TOKEN || undefined,
    json: false, help: false, recursive: false, destroyMoreRecent: false, output: undefined, source: undefined, format: undefined, sha256: undefined,
    name: undefined, version: undefined, type: 'kvm', imageService: env.MISTIFY_IMAGE_SERVICE || undefined, args: [],
  }
  const given: Partial<Record<Flag, string | true>> = {}
  // Not strict: the tokens are checked here, so that the messages stay ours (and name the whole argument).
  const { tokens } = parseArgs({ args: [...argv], options: FLAGS, strict: false, allowPositionals: true, tokens: true })
  for (const tok of tokens) {
    if (tok.kind === 'positional') { o.args.push(tok.value); continue }
    if (tok.kind === 'option-terminator') continue
    if (!Object.hasOwn(FLAGS, tok.name)) throw new UsageError(`unknown option ${argv[tok.index]}`)
    const name = tok.name as Flag
    if (FLAGS[name].type === 'boolean') { given[name] = true; continue }
    if (tok.value === undefined) throw new UsageError(`${tok.rawName} needs a value`)
    given[name] = tok.value
  }
  const str = (f: Flag) => (typeof given[f] === 'string' ? given[f] : undefined)
  o.url = str('url') ?? o.url
  o.socket = str('socket') ?? o.socket
  o.json = given.json === true
  o.help = given.help === true
  o.recursive = given.recursive === true
  o.destroyMoreRecent = given['destroy-more-recent'] === true
  o.output = str('output')
  o.source = str('source')
  o.format = str('format')
  o.sha256 = str('sha256')
  o.name = str('name')
  o.type = str('type') ?? o.type
  o.imageService = str('image-service') ?? o.imageService
  const version = str('version')
  if (version !== undefined) {
    if (!/^[1-9][0-9]{0,8}$/.test(version)) throw new UsageError(`--version: a positive whole number, got ${JSON.stringify(version)}`)
    o.version = Number(version)
  }
  if (o.imageService !== undefined) { try { new URL(o.imageService) } catch { throw new UsageError(`--image-service: not a URL: ${o.imageService}`) } }
  try { new URL(o.url) } catch { throw new UsageError(`--url: not a URL: ${o.url}`) }
  // Flags beat the environment; within one of them, a token and a token file are one too many.
  const flagToken = str('token')
  const flagTokenFile = str('token-file')
  if (flagToken !== undefined && flagTokenFile !== undefined) throw new UsageError('--token and --token-file: give one of them')
  if (flagToken !== undefined) o.token = flagToken
  else if (flagTokenFile !== undefined) o.token = readTokenFile(flagTokenFile)
  else if (env.MISTIFY_TOKEN_FILE) {
    if (env.MISTIFY_TOKEN) throw new UsageError('MISTIFY_TOKEN and MISTIFY_TOKEN_FILE: set one of them')
    o.token = readTokenFile(env.MISTIFY_TOKEN_FILE)
  }
  return o
}

function readTokenFile(path: string): string {
  try {
    return readToken(path)
  } catch (e) {
    if (e instanceof TokenFileError && e.reason !== 'unreadable') throw new UsageError(`--token-file ${path}: expected one token on one line`)
    throw new UsageError(`--token-file ${path}: ${(e as Error).message}`)
  }
}
