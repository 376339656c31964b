/**
 * The agent over HTTP (TCP or a unix socket, optional bearer token): its JSON-RPC 2.0
 * endpoint through json-rpc-2.0's client, and the /snapshots/download stream.
 */
import http from 'node:http'
import https from 'node:https'
import { JSONRPCClient, JSONRPCErrorException, type JSONRPCRequest, type JSONRPCResponse, type TypedJSONRPCClient } from 'json-rpc-2.0'
import { BodyTooLarge, readBody } from '../common/body.js'

const RPC_PATH = '/_mistify_RPC_'
const DOWNLOAD_PATH = '/snapshots/download'
/** Largest answer or error text read (a long image list stays well below). */
const ANSWER_LIMIT = 16 << 20

/** The agent answered with an error: exit 1. */
export class AgentRefused extends Error {}
/** Could not reach the agent, or the stream broke: exit 3. */
export class TransportError extends Error {}

// The agent's answers as this CLI reads them: a copy of agent/services/shapes.ts's wire types
// (the CLI talks to the agent over the wire and does not import it).
export interface WireImage {
  id: string; type: string; volume?: string; snapshot?: string; size: number; status?: string
  progress?: { bytes: number; total: number | null }; error?: string; format?: string
}
export interface WireVolume { id: string; size: number; device: string }
export interface WireSnapshot { id: string; size: number }
interface Images { images: WireImage[] }
interface Snapshots { snapshots: WireSnapshot[] }

/** The methods the CLI calls, with the params it sends. */
export type AgentMethods = {
  ListImages(p: Record<string, never>): Images
  GetImage(p: { id: string }): Images
  RequestImage(p: { id: string; source?: string; sha256?: string; format?: string }): Images
  DeleteImage(p: { id: string }): Images
  CloneImage(p: { id: string; dest: string }): { volumes: WireVolume[] }
  CreateSnapshot(p: { id: string; dest: string; recursive: boolean }): Snapshots
  ListSnapshots(p: { id?: string }): Snapshots
  RollbackSnapshot(p: { id: string; recursive: boolean; destroyMoreRecent: boolean }): Snapshots
  DeleteSnapshot(p: { id: string; recursive: boolean }): Snapshots
}

export interface Target { url: string; socket: string | undefined; token: string | undefined }

interface Reply { status: number; headers: http.IncomingHttpHeaders; res: http.IncomingMessage }

/** One call's slot for a failure of ours: the library turns a failed send into an error answer, losing its class. */
interface Call { failure?: Error }

export class AgentClient {
  private readonly rpc: TypedJSONRPCClient<AgentMethods, Call>

  constructor(private readonly target: Target) {
    this.rpc = new JSONRPCClient<Call>(async (payload: JSONRPCRequest, call) => {
      try {
        this.rpc.receive(await this.post(payload))
      } catch (e) {
        call.failure = e as Error
        throw e
      }
    }) as TypedJSONRPCClient<AgentMethods, Call>
  }

  async call<M extends keyof AgentMethods>(method: M, params: Parameters<AgentMethods[M]>[0]): Promise<ReturnType<AgentMethods[M]>> {
    const call: Call = {}
    try {
      return await this.rpc.request(method, params as never, call)
    } catch (e) {
      if (call.failure) throw call.failure
      if (e instanceof JSONRPCErrorException) {
        const ref = (e.data as { ref?: string } | undefined)?.ref
        throw new AgentRefused(`${method}: ${e.message || 'error'}${ref ? ` (ref ${ref})` : ''}`)
      }
      throw new TransportError(`the agent's answer to ${method} is neither a result nor an error`)
    }
  }

  private async post(payload: JSONRPCRequest): Promise<JSONRPCResponse> {
    const r = await this.request('POST', RPC_PATH, JSON.stringify(payload))
    const text = await answer(r.res).catch((e: Error) => { throw new TransportError(`reading the answer: ${e.message}`) })
    if (r.status !== 200) throw httpError(r.status, text)
    let env: unknown
    try { env = JSON.parse(text) } catch { throw new TransportError(`the agent's answer is not JSON: ${text.slice(0, 200)}`) }
    // An answer for another id would leave the library waiting for ever.
    if (env === null || typeof env !== 'object' || (env as { id?: unknown }).id !== payload.id) {
      throw new TransportError(`the agent's answer is not the answer to this call: ${text.slice(0, 200)}`)
    }
    return env as JSONRPCResponse
  }

  /** GET /snapshots/download; resolves with the stream once the agent has said 200. `fromGuid`: an increment from the snapshot with that guid. */
  async download(snapshot: string, recursive: boolean, fromGuid?: string): Promise<Reply> {
    const r = await this.request('GET', downloadPath(snapshot, recursive, fromGuid))
    if (r.status !== 200) throw httpError(r.status, await answer(r.res).catch(() => ''))
    return r
  }

  /** HEAD /snapshots/download: the agent's status for it (an increment: 200 when it still holds the base). */
  async probe(snapshot: string, fromGuid?: string): Promise<number> {
    const r = await this.request('HEAD', downloadPath(snapshot, false, fromGuid))
    r.res.resume()
    return r.status
  }

  /** One HTTP request to the agent; resolves when the response head arrives. */
  private request(method: string, path: string, body?: string): Promise<Reply> {
    const o = this.target
    const base = new URL(o.url)
    const secure = base.protocol === 'https:'
    const headers: http.OutgoingHttpHeaders = { 'User-Agent': 'mistify-image' }
    if (o.token !== undefined) headers.Authorization = `Bearer ${o.token}`
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = Buffer.byteLength(body) }
    const fullPath = base.pathname.replace(/\/$/, '') + path
    const target: http.RequestOptions = o.socket !== undefined
      ? { socketPath: o.socket, path: fullPath, method, headers }
      : { hostname: base.hostname.replace(/^\[|\]$/g, ''), port: base.port || (secure ? 443 : 80), path: fullPath, method, headers }
    return new Promise((resolve, reject) => {
      const req = (secure && o.socket === undefined ? https : http).request(target, (res) => {
        // A download ends at the connection's close, and a failed one with a reset: Node reports the reset
        // on the request and would end the response as if whole, so it must fail the response here.
        req.on('error', (e) => res.destroy(e))
        resolve({ status: res.statusCode ?? 0, headers: res.headers, res })
      })
      req.on('error', (e: NodeJS.ErrnoException) => reject(new TransportError(`request to the agent at ${o.socket ?? o.url} failed: ${e.code ?? e.message}`)))
      req.end(body)
    })
  }
}

function downloadPath(snapshot: string, recursive: boolean, fromGuid: string | undefined): string {
  const q = new URLSearchParams({ id: snapshot })
  if (recursive) q.set('recursive', '1')
  if (fromGuid !== undefined) q.set('from_guid', fromGuid)
  return `${DOWNLOAD_PATH}?${q}`
}

async function answer(res: http.IncomingMessage): Promise<string> {
  try {
    return (await readBody(res, ANSWER_LIMIT)).toString('utf8')
  } catch (e) {
    throw e instanceof BodyTooLarge ? new Error(`the answer is larger than ${ANSWER_LIMIT} bytes`) : e
  }
}

function httpError(status: number, text: string): AgentRefused {
  const t = text.trim()
  if (status === 401) return new AgentRefused('unauthorized: the agent needs a token (--token or MISTIFY_TOKEN)')
  return new AgentRefused(`agent answered HTTP ${status}${t ? `: ${t}` : ''}`)
}
