/**
 * The S3 blob store (Ceph RGW, MinIO, AWS): bytes stream into a temporary key `<prefix>tmp/<id>.<random>`
 * (multipart, bounded parts, so memory stays bounded), and become visible as `<prefix>images/<id>` only
 * on commit, by a server-side copy once the whole body arrived and its size and digests are known.
 * Reads are ranged GETs, so a Range request costs only its range.
 */
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateBucketCommand,
  CreateMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand,
  ListObjectsV2Command, S3Client, S3ServiceException, UploadPartCopyCommand,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { BlobStoreError, InvalidIdError, isBlobKey, Meter, writeBlob, type BlobStore, type OpenedBlob, type Staged, type StoredData, type WriteOptions } from './blobs.js'

const MiB = 1024 ** 2
/** S3's limit for one CopyObject; larger objects are copied part by part (UploadPartCopy). */
export const MAX_SINGLE_COPY = 5 * 1024 ** 3

export interface S3BlobsOptions {
  bucket: string
  /** Key prefix ('' or ending in '/'), so several services or tests can share a bucket. */
  prefix?: string
  endpoint?: string
  region?: string
  /** Default: the SDK's chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment). */
  credentials?: { accessKeyId: string; secretAccessKey: string }
  /** Upload part size (at least 5 MiB); memory per upload is about partSize × (queueSize + 1). */
  partSize?: number
  queueSize?: number
  /** Objects above this are committed with a multipart copy (tests lower it). */
  singleCopyLimit?: number
  /** Part size of that multipart copy. */
  copyPartSize?: number
  /** init() deletes temporary objects older than this (another replica may be writing younger ones). */
  staleTmpMs?: number
  /** Create the bucket in init() when it does not exist. */
  createBucket?: boolean
}

export class S3Blobs implements BlobStore {
  readonly client: S3Client
  readonly bucket: string
  readonly prefix: string
  private readonly o: S3BlobsOptions

  constructor(o: S3BlobsOptions) {
    this.o = o
    this.bucket = o.bucket
    this.prefix = o.prefix ?? ''
    if (this.prefix !== '' && !this.prefix.endsWith('/')) throw new Error('S3 key prefix must end with "/"')
    this.client = new S3Client({
      region: o.region ?? 'us-east-1',
      ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
      // Ceph RGW and MinIO on a bare host:port have no per-bucket DNS names.
      forcePathStyle: true,
      // The SDK's default CRC32 trailers (aws-chunked uploads) are not understood by RGW 16; we
      // compute our own digests as the bytes pass.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    })
  }

  get where(): string {
    return `s3 ${this.o.endpoint ?? 'aws'}/${this.bucket}/${this.prefix}`
  }

  keyOf(id: string): string {
    if (!isBlobKey(id)) throw new InvalidIdError(id)
    return `${this.prefix}images/${id.toLowerCase()}`
  }

  async init(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }))
    } catch (err) {
      if (!isNotFound(err) || this.o.createBucket === false) throw wrap(err, `bucket ${this.bucket}`)
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket })).catch((e: unknown) => {
        // Another replica may have created it just now.
        if (!(e instanceof S3ServiceException && (e.name === 'BucketAlreadyOwnedByYou' || e.name === 'BucketAlreadyExists'))) throw wrap(e, `create bucket ${this.bucket}`)
      })
    }
    await this.dropStaleTmp()
  }

  /** Temporary objects a crashed run left behind; younger ones may be another replica's commit in progress. */
  private async dropStaleTmp(): Promise<void> {
    const before = Date.now() - (this.o.staleTmpMs ?? 3_600_000)
    let token: string | undefined
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}tmp/`, ContinuationToken: token }))
      for (const obj of page.Contents ?? []) {
        if (obj.Key !== undefined && (obj.LastModified?.getTime() ?? 0) < before) {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: obj.Key }))
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  write(id: string, body: AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<StoredData> {
    return writeBlob(this, id, body, o)
  }

  async stage(id: string, body: AsyncIterable<Uint8Array>, o: WriteOptions = {}): Promise<Staged> {
    // A bad key is refused before any byte is stored.
    this.keyOf(id)
    const tmp = `${this.prefix}tmp/${id.toLowerCase()}.${randomBytes(6).toString('hex')}`
    const meter = new Meter(o)
    // Enough parts for the largest body we may get (S3 allows 10,000), at least 8 MiB each.
    const biggest = Math.max(o.expectedSize ?? 0, o.maxSize ?? 0)
    const partSize = Math.max(this.o.partSize ?? 8 * MiB, Math.ceil(biggest / 9_000))
    const abort = new AbortController()
    const onAbort = (): void => abort.abort()
    o.signal?.addEventListener('abort', onAbort, { once: true })
    let data: StoredData
    const source = Readable.from(meter.pass(body), { objectMode: false })
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: tmp, Body: source, ContentType: 'application/octet-stream' },
        partSize,
        queueSize: this.o.queueSize ?? 2,
        leavePartsOnError: false,
        abortController: abort,
      })
      await upload.done()
      data = meter.finish()
      // RGW answers CompleteMultipartUpload with an empty ETag: trust a HEAD, and check the size.
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: tmp }))
      if (head.ContentLength !== data.size) {
        throw new BlobStoreError(`stored ${head.ContentLength ?? '?'} bytes under ${tmp}, sent ${data.size}`)
      }
    } catch (err) {
      // Nothing under the final key was touched; drop what may exist under the temporary one.
      // The SDK may stop reading without closing the body: end it, and with it the sender's stream.
      source.destroy()
      await this.deleteKey(tmp).catch(() => {})
      // The SDK's own errors ("Upload aborted.") hide why: the body's failure (the sender, a
      // limit) or the caller's reason (cancel) is the story; anything else is the store's.
      if (meter.failed !== undefined) throw meter.failed
      if (o.signal?.aborted) throw o.signal.reason
      throw wrap(err, `upload to ${tmp}`)
    } finally {
      o.signal?.removeEventListener('abort', onAbort)
    }
    const size = data.size
    // Idempotent: a metadata store that retries its update callback may call commit twice.
    let committed = false
    return {
      data,
      commit: async (as) => {
        if (committed) return
        const final = this.keyOf(as ?? id)
        try {
          await this.copy(tmp, final, size)
        } catch (err) {
          throw wrap(err, `commit ${tmp} → ${final}`)
        }
        committed = true
        await this.deleteKey(tmp).catch(() => {})
      },
      discard: async () => { if (!committed) await this.deleteKey(tmp) },
    }
  }

  /** Server-side copy: one CopyObject up to the 5 GiB limit, else a multipart copy. */
  private async copy(from: string, to: string, size: number): Promise<void> {
    const source = `${this.bucket}/${from}`
    if (size <= (this.o.singleCopyLimit ?? MAX_SINGLE_COPY)) {
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: to, CopySource: source, ContentType: 'application/octet-stream', MetadataDirective: 'REPLACE' }))
      return
    }
    const partSize = Math.max(this.o.copyPartSize ?? 1024 ** 3, Math.ceil(size / 9_000))
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, ContentType: 'application/octet-stream' }))
    if (UploadId === undefined) throw new BlobStoreError('CreateMultipartUpload returned no UploadId')
    try {
      const parts: Array<{ ETag: string; PartNumber: number }> = []
      for (let start = 0, n = 1; start < size; start += partSize, n++) {
        const end = Math.min(size, start + partSize) - 1
        const r = await this.client.send(new UploadPartCopyCommand({
          Bucket: this.bucket, Key: to, UploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${start}-${end}`,
        }))
        const etag = r.CopyPartResult?.ETag
        if (etag === undefined) throw new BlobStoreError(`UploadPartCopy part ${n} returned no ETag`)
        parts.push({ ETag: etag, PartNumber: n })
      }
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId, MultipartUpload: { Parts: parts } }))
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: to, UploadId })).catch(() => {})
      throw err
    }
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: to }))
    if (head.ContentLength !== size) throw new BlobStoreError(`copied ${head.ContentLength ?? '?'} bytes to ${to}, expected ${size}`)
  }

  async open(id: string): Promise<OpenedBlob | undefined> {
    const key = this.keyOf(id)
    let size: number
    let etag: string | undefined
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
      size = head.ContentLength ?? 0
      etag = head.ETag !== undefined && head.ETag !== '' ? head.ETag : undefined
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw wrap(err, `HEAD ${key}`)
    }
    return {
      size,
      stream: async (start, end) => {
        try {
          const r = await this.client.send(new GetObjectCommand({
            Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}`,
            // The object seen by HEAD, not one committed since under the same id.
            ...(etag !== undefined ? { IfMatch: etag } : {}),
          }))
          if (!(r.Body instanceof Readable)) throw new BlobStoreError(`GET ${key}: no stream body`)
          return r.Body
        } catch (err) {
          throw wrap(err, `GET ${key}`)
        }
      },
      close: async () => {},
    }
  }

  async exists(id: string): Promise<boolean> {
    const key = this.keyOf(id)
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }))
      return true
    } catch (err) {
      if (isNotFound(err)) return false
      throw wrap(err, `HEAD ${key}`)
    }
  }

  async remove(id: string): Promise<void> {
    await this.deleteKey(this.keyOf(id))
  }

  async health(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }))
    } catch (err) {
      throw wrap(err, `bucket ${this.bucket}`)
    }
  }

  close(): void {
    this.client.destroy()
  }

  private async deleteKey(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }))
    } catch (err) {
      if (!isNotFound(err)) throw wrap(err, `DELETE ${key}`)
    }
  }
}

function isNotFound(err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false
  return err.$metadata.httpStatusCode === 404 || err.name === 'NotFound' || err.name === 'NoSuchKey' || err.name === 'NoSuchBucket'
}

/** An SDK error names only its code; say what we were doing and where. */
function wrap(err: unknown, what: string): Error {
  if (err instanceof BlobStoreError) return err
  const e = err as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } }
  const status = e.$metadata?.httpStatusCode
  const detail = [e.name, e.code, e.message].filter((x) => x !== undefined && x !== '' && x !== 'UnknownError').join(': ')
  return new BlobStoreError(`S3 ${what} failed${status !== undefined ? ` (HTTP ${status})` : ''}: ${detail || String(err)}`, { cause: err })
}
