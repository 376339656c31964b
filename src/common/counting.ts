import { Transform } from 'node:stream'

/** A pass-through that reports each chunk's size: how bytes are counted on their way, without touching the streams on either side. */
export function countingStream(add: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      add(chunk.byteLength)
      cb(null, chunk)
    },
  })
}
