/**
 * Listening on TCP or on a unix socket. A socket path left by a previous run
 * (nobody accepts on it) is removed first; a live one, or a path that is not
 * a socket, is an error. The socket is made mode 0660.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs'
import { connect, type Server } from 'node:net'
import { once } from 'node:events'
import { Server as HttpServer } from 'node:http'

export class ListenError extends Error {
  override name = 'ListenError'
}

export const SOCKET_MODE = 0o660

/** Is something accepting connections on this unix socket? */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

/** Remove a stale socket file at `path`; throw when the path is in use or not a socket. */
export async function clearStaleSocket(path: string): Promise<void> {
  let st
  try { st = lstatSync(path) } catch { return } // nothing there
  if (!st.isSocket()) throw new ListenError(`socket ${path}: exists and is not a socket; not removing it`)
  if (await socketAlive(path)) throw new ListenError(`socket ${path}: another process is listening on it`)
  unlinkSync(path)
}

export type ListenOn = { readonly socket: string } | { readonly port: number; readonly host: string }

export async function listen(server: Server, on: ListenOn): Promise<void> {
  // Longer than clients' keep-alive (Go's 90 s idle, undici's 4 s) so we never
  // close a pooled connection just as a client reuses it.
  if (server instanceof HttpServer) {
    server.keepAliveTimeout = 95_000
    server.headersTimeout = 100_000
  }
  if ('socket' in on) await clearStaleSocket(on.socket)
  if ('socket' in on) server.listen(on.socket)
  else server.listen(on.port, on.host)
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => { throw e })])
  if ('socket' in on) chmodSync(on.socket, SOCKET_MODE)
}
