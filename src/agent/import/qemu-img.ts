/**
 * qcow2 images through `qemu-img` (package qemu-utils), when it is installed.
 * qcow2 needs random access, so it cannot be converted as it streams in: the
 * caller spools it into a scratch zvol first and converts from that device.
 */
import { runCommand, type CommandFailure } from '../../common/exec.js'
import { UpstreamError } from '../errors.js'

export const QEMU_IMG = 'qemu-img'

/** A qemu-img failure, with its exit status (check's 3 means only leaked clusters). */
class QemuImgError extends UpstreamError {
  constructor(message: string, readonly exitCode: number | undefined) { super(message) }
}

function toError(f: CommandFailure): Error {
  if (f.exitCode === undefined && /ENOENT/.test(f.stderr)) {
    return new UpstreamError('qcow2 images need qemu-img (package qemu-utils), which is not installed')
  }
  const why = f.stderr.trim().split('\n')[0] || `exit ${f.exitCode ?? f.signal}`
  return new QemuImgError(`qemu-img ${f.args[0]}: ${why}`, f.exitCode)
}

export interface Qcow2Info {
  readonly virtualSize: number
}

/**
 * What the qcow2 at `path` holds. An image that refers to other files
 * (a backing file, an external data file) is refused: converting it would
 * read whatever host path the image names.
 */
export async function qcow2Info(path: string, o: { bin?: string | undefined; signal?: AbortSignal | undefined } = {}): Promise<Qcow2Info> {
  const out = await runCommand(o.bin ?? QEMU_IMG, ['info', '--output=json', '-f', 'qcow2', path], toError, { signal: o.signal, timeoutMs: 60_000 })
  let info: Record<string, unknown>
  try { info = JSON.parse(out) as Record<string, unknown> } catch { throw new UpstreamError('qemu-img info: output is not JSON') }
  const size = info['virtual-size']
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw new UpstreamError('qcow2 image: no usable virtual size')
  if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
    throw new UpstreamError('qcow2 image has a backing file; only self-contained images are accepted')
  }
  const data = (info['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data
  if (data?.['data-file'] !== undefined) throw new UpstreamError('qcow2 image has an external data file; only self-contained images are accepted')
  return { virtualSize: size }
}

/**
 * Refuse a corrupt qcow2 (a truncated one among them: past its end the
 * spool reads zeros, which convert would take for empty clusters).
 * Leaked clusters (exit 3) waste space in the source only: accepted.
 */
export async function qcow2Check(path: string, o: { bin?: string | undefined; signal?: AbortSignal | undefined } = {}): Promise<void> {
  try {
    await runCommand(o.bin ?? QEMU_IMG, ['check', '-f', 'qcow2', path], toError, { signal: o.signal, timeoutMs: 10 * 60_000 })
  } catch (e) {
    if (e instanceof QemuImgError && e.exitCode === 3) return
    // check reports corruption on stdout, which a failure does not keep: say it plainly.
    if (e instanceof QemuImgError && e.exitCode === 2) throw new UpstreamError('qcow2 image is corrupt or truncated (qemu-img check found errors)')
    throw e
  }
}

/** Convert the qcow2 at `src` into the raw device `dest`, which already reads as zeros. */
export async function qcow2ToDevice(src: string, dest: string, o: { bin?: string | undefined; signal?: AbortSignal | undefined } = {}): Promise<void> {
  // -n: the device exists; --target-is-zero: skip writing zeros to a fresh zvol (thin).
  await runCommand(o.bin ?? QEMU_IMG, ['convert', '-f', 'qcow2', '-O', 'raw', '-n', '--target-is-zero', src, dest], toError, { signal: o.signal, timeoutMs: 0 })
}
