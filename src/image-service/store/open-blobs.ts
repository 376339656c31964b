/** The blob store `--blobs` names; the S3 SDK is loaded only when it is used (it costs start-up time). */
import type { BlobStore } from './blobs.js'
import { parseBlobsUrl } from './blobs-url.js'
import { ImageFiles } from './files.js'

/** dataDir holds the directory store; S3 credentials come from env. */
export async function openBlobs(v: string, dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<BlobStore> {
  const spec = parseBlobsUrl(v)
  if (spec.kind === 'dir') return new ImageFiles(dataDir)
  const { S3Blobs } = await import('./s3-blobs.js')
  const id = env.AWS_ACCESS_KEY_ID
  const secret = env.AWS_SECRET_ACCESS_KEY
  return new S3Blobs({
    bucket: spec.bucket,
    prefix: spec.prefix,
    ...(spec.endpoint !== undefined ? { endpoint: spec.endpoint } : {}),
    ...(spec.region !== undefined ? { region: spec.region } : {}),
    ...(id && secret ? { credentials: { accessKeyId: id, secretAccessKey: secret } } : {}),
  })
}
