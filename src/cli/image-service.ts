/** The image service as `publish` needs it: the latest version of a name, and streamed uploads of a full stream and of an increment. */
import http from 'node:http'
import https from 'node:https'
import { pipeline } from 'node:stream/promises'
import type { Readable } from 'node:stream'
import { BodyTooLarge, readBody } from '../common/body.js'
import { IMAGE_HEADER } from '../common/image-headers.js'
import { AgentRefused, TransportError } from './client.js'

const ANSWER_LIMIT = 1 << 20

/** An image as the service's native API shows it (the fields publish reads). */
export interface ServiceImage {
  id: string; name: string; version: number; status: string; size: number; sha256: string
  snapshot_guid?: string; origin?: string
  increment?: { from_guid: string; size: number; sha256: string } | null
}

/** The service refused: exit 1, as an agent's refusal. */
export class ServiceRefused extends AgentRefused {}

export class ImageServiceClient {
  constructor(private readonly base: string) {}

  /** The newest complete version of `name`, or undefined when it has none. */
  async latest(name: string): Promise<ServiceImage | undefined> {
    const { status, text } = await this.send('GET', `/images/by-name/${encodeURIComponent(name)}/latest`)
    if (status === 404) return undefined
    if (status !== 200) throw refused(status, text)
    return parse(text)
  }

  /** PUT /images: the bytes of `body`, chunked (a zfs stream's length is not known before it ends). */
  async upload(body: Readable, o: { name: string; version?: number | undefined; type: string }): Promise<ServiceImage> {
    const headers: http.OutgoingHttpHeaders = { [IMAGE_HEADER.type]: o.type, [IMAGE_HEADER.name]: o.name }
    if (o.version !== undefined) headers[IMAGE_HEADER.version] = String(o.version)
    const { status, text } = await this.send('PUT', '/images', { body, headers })
    if (status !== 200) throw refused(status, text)
    return parse(text)
  }

  /** PUT /images/ID/increment: a `zfs send -i` stream from `origin`'s snapshot to this image's. */
  async uploadIncrement(id: string, origin: string, body: Readable): Promise<ServiceImage> {
    const { status, text } = await this.send('PUT', `/images/${encodeURIComponent(id)}/increment`, { body, headers: { [IMAGE_HEADER.origin]: origin } })
    if (status !== 200) throw refused(status, text)
    return parse(text)
  }

  private send(method: string, path: string, o: { body?: Readable; headers?: http.OutgoingHttpHeaders } = {}): Promise<{ status: number; text: string }> {
    const url = new URL(this.base.replace(/\/$/, '') + path)
    const lib = url.protocol === 'https:' ? https : http
    return new Promise((resolve, reject) => {
      const fail = (e: NodeJS.ErrnoException) => reject(new TransportError(`${method} ${url.origin}${path} failed: ${e.code ?? e.message}`))
      const req = lib.request(url, { method, headers: { 'User-Agent': 'mistify-image', 'Content-Type': 'application/octet-stream', ...o.headers } }, (res) => {
        readBody(res, ANSWER_LIMIT).then(
          (b) => resolve({ status: res.statusCode ?? 0, text: b.toString('utf8') }),
          (e: Error) => reject(new TransportError(`reading the image service's answer: ${e instanceof BodyTooLarge ? 'too large' : e.message}`)),
        )
      })
      req.on('error', fail)
      // The service may answer (a refusal) before the body is all sent: the answer wins, not the broken pipe.
      if (o.body) pipeline(o.body, req).catch(() => {})
      else req.end()
    })
  }
}

function parse(text: string): ServiceImage {
  try {
    return JSON.parse(text) as ServiceImage
  } catch {
    throw new TransportError(`the image service's answer is not JSON: ${text.slice(0, 200)}`)
  }
}

function refused(status: number, text: string): ServiceRefused {
  let msg = text.trim()
  try { msg = (JSON.parse(text) as { message?: string }).message ?? msg } catch { /* plain text */ }
  return new ServiceRefused(`image service answered HTTP ${status}${msg ? `: ${msg}` : ''}`)
}
