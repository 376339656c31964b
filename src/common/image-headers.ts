/** The X-Image-* headers of the image service's native API: one list for the service, the agent and the CLI. */
export const IMAGE_HEADER = {
  id: 'X-Image-Id',
  type: 'X-Image-Type',
  name: 'X-Image-Name',
  version: 'X-Image-Version',
  comment: 'X-Image-Comment',
  origin: 'X-Image-Origin',
  fromGuid: 'X-Image-From-Guid',
  snapshotGuid: 'X-Image-Snapshot-Guid',
} as const

export type DigestAlgorithm = 'sha256' | 'blake2b512'

/** The digests the service publishes with an image's bytes, and an agent checks them against. */
export const DIGEST_HEADER: Readonly<Record<DigestAlgorithm, string>> = { sha256: 'X-Image-Sha256', blake2b512: 'X-Image-Blake2b512' }
