/** The commands: each a call to the agent (or the download stream) and what it prints. */
import { createWriteStream, renameSync, rmSync } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { Transform, type Writable } from 'node:stream'
import { HELP, UsageError, type Options } from './args.js'
import { AgentClient, TransportError } from './client.js'
import { human, progress, render, withSpinner } from './render.js'
import { ImageServiceClient } from './image-service.js'
import { publish } from './publish.js'

function need(args: readonly string[], n: 0, usage: string): []
function need(args: readonly string[], n: 1, usage: string): [string]
function need(args: readonly string[], n: 2, usage: string): [string, string]
function need(args: readonly string[], n: number, usage: string): string[] {
  if (args.length !== n) throw new UsageError(`usage: mistify-image ${usage}`)
  return [...args]
}

async function download(agent: AgentClient, o: Options, snapshot: string, out: Writable, showProgress: boolean): Promise<{ bytes: number; snapshot: string }> {
  const r = await agent.download(snapshot, o.recursive)
  const estimate = Number(r.headers['x-estimated-size'] ?? NaN)
  const bar = progress(showProgress)
  const start = Date.now()
  let bytes = 0
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length
      const secs = Math.max((Date.now() - start) / 1000, 0.001)
      const pct = Number.isFinite(estimate) && estimate > 0 ? ` (${Math.min(100, (bytes / estimate) * 100).toFixed(0)}% of ~${human(estimate)})` : ''
      bar.update(`${human(bytes)}${pct}  ${human(bytes / secs)}/s`)
      cb(null, chunk)
    },
  })
  try {
    await pipeline(r.res, counter, out)
  } catch (e) {
    throw new TransportError(`download of ${snapshot} cut after ${bytes} bytes: ${(e as Error).message}`)
  } finally {
    bar.done()
  }
  return { bytes, snapshot: String(r.headers['x-snapshot'] ?? snapshot) }
}

export async function run(o: Options, stdout: NodeJS.WriteStream = process.stdout): Promise<void> {
  const agent = new AgentClient(o)
  const print = (result: unknown) => { stdout.write(o.json ? `${JSON.stringify(result)}\n` : render(result)) }
  const tty = process.stderr.isTTY === true && !o.json
  const [cmd, sub, ...rest] = o.args
  switch (cmd) {
    case 'images': {
      switch (sub) {
        case 'list': need(rest, 0, 'images list'); return print(await agent.call('ListImages', {}))
        case 'show': { const [id] = need(rest, 1, 'images show ID'); return print(await agent.call('GetImage', { id })) }
        case 'fetch': {
          const [id] = need(rest, 1, 'images fetch ID [--source URL --sha256 HEX] [--format zfs|raw|qcow2]')
          const params = { id, ...(o.source ? { source: o.source } : {}), ...(o.sha256 ? { sha256: o.sha256 } : {}), ...(o.format ? { format: o.format } : {}) }
          return print(await withSpinner(tty, `fetching ${id}`, agent.call('RequestImage', params)))
        }
        case 'delete': { const [id] = need(rest, 1, 'images delete ID'); return print(await agent.call('DeleteImage', { id })) }
        default: throw new UsageError('usage: mistify-image images list|show ID|fetch ID|delete ID')
      }
    }
    case 'clone': {
      const [id, dest] = need([sub, ...rest].filter((x) => x !== undefined), 2, 'clone ID DEST')
      return print(await agent.call('CloneImage', { id, dest }))
    }
    case 'snapshot': {
      switch (sub) {
        case 'create': { const [id, dest] = need(rest, 2, 'snapshot create ID NAME [-r]'); return print(await agent.call('CreateSnapshot', { id, dest, recursive: o.recursive })) }
        case 'list': if (rest.length > 1) throw new UsageError('usage: mistify-image snapshot list [ID]'); return print(await agent.call('ListSnapshots', rest[0] === undefined ? {} : { id: rest[0] }))
        case 'rollback': { const [id] = need(rest, 1, 'snapshot rollback ID [--destroy-more-recent] [-r]'); return print(await agent.call('RollbackSnapshot', { id, recursive: o.recursive, destroyMoreRecent: o.destroyMoreRecent })) }
        case 'delete': { const [id] = need(rest, 1, 'snapshot delete ID [-r]'); return print(await agent.call('DeleteSnapshot', { id, recursive: o.recursive })) }
        default: throw new UsageError('usage: mistify-image snapshot create|list|rollback|delete …')
      }
    }
    case 'download': {
      const [snapshot] = need([sub, ...rest].filter((x) => x !== undefined), 1, 'download SNAPSHOT [-o FILE|-] [-r]')
      const file = o.output
      if (file === undefined || file === '-') {
        if (file === undefined && stdout.isTTY) throw new UsageError('refusing to write a zfs stream to a terminal: use -o FILE or redirect stdout')
        const r = await download(agent, o, snapshot, stdout, tty)
        if (o.json) process.stderr.write(`${JSON.stringify({ snapshot: r.snapshot, bytes: r.bytes })}\n`)
        return
      }
      // Into FILE.part, renamed only once the stream ended cleanly: a cut transfer never looks whole.
      const part = `${file}.part`
      try {
        const r = await download(agent, o, snapshot, createWriteStream(part, { flags: 'w' }), tty)
        renameSync(part, file)
        stdout.write(o.json ? `${JSON.stringify({ snapshot: r.snapshot, bytes: r.bytes, file })}\n` : `${r.snapshot}: ${r.bytes} bytes written to ${file}\n`)
      } catch (e) {
        rmSync(part, { force: true })
        throw e
      }
      return
    }
    case 'publish': {
      const [snapshot] = need([sub, ...rest].filter((x) => x !== undefined), 1, 'publish SNAPSHOT --name NAME [--version N] [--image-service URL]')
      if (!o.name) throw new UsageError('publish: --name NAME is required (the image the snapshot becomes a version of)')
      if (!o.imageService) throw new UsageError('publish: --image-service URL (or MISTIFY_IMAGE_SERVICE) is required')
      const r = await withSpinner(tty, `publishing ${snapshot}`, publish(agent, new ImageServiceClient(o.imageService), { snapshot, name: o.name, version: o.version, type: o.type }))
      if (o.json) { stdout.write(`${JSON.stringify(r)}\n`); return }
      const i = r.image
      stdout.write(`${i.name} version ${i.version}: image ${i.id}, ${human(i.size)} full stream (sha256 ${i.sha256})\n`)
      stdout.write(i.increment ? `increment from ${i.origin}: ${human(i.increment.size)} (sha256 ${i.increment.sha256})\n` : `no increment: ${r.noIncrement ?? 'none stored'}\n`)
      return
    }
    case undefined: throw new UsageError(HELP.trimEnd())
    default: throw new UsageError(`unknown command ${JSON.stringify(cmd)} (mistify-image --help)`)
  }
}
