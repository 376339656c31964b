/**
 * /v2/schemas/image(s): glanceclient validates every image it sends against `image`. Shape from Glance's
 * own schema (Apache-2.0); what we produce must stay valid against it (custom properties are strings).
 */

export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'] as const
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'] as const
export const VISIBILITIES = ['public', 'private', 'shared', 'community'] as const
export const GLANCE_STATUSES = ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated'] as const

const UUID_PATTERN = '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$'

const ro = (type: unknown, description: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ type, readOnly: true, description, ...extra })

export function imageSchema(): Record<string, unknown> {
  return {
    name: 'image',
    additionalProperties: { type: 'string' },
    links: [
      { rel: 'self', href: '{self}' },
      { rel: 'enclosure', href: '{file}' },
      { rel: 'describedby', href: '{schema}' },
    ],
    properties: {
      id: { type: 'string', pattern: UUID_PATTERN, description: 'An identifier for the image' },
      name: { type: ['null', 'string'], maxLength: 255, description: 'Descriptive name for the image' },
      status: ro('string', 'Status of the image', { enum: [...GLANCE_STATUSES] }),
      visibility: { type: 'string', enum: [...VISIBILITIES], description: 'Scope of image accessibility' },
      protected: { type: 'boolean', description: 'If true, image will not be deletable.' },
      os_hidden: { type: 'boolean', description: 'If true, image will not appear in default image list response.' },
      checksum: ro(['null', 'string'], 'md5 hash of image contents.', { maxLength: 32 }),
      os_hash_algo: ro(['null', 'string'], 'Algorithm to calculate os_hash_value', { maxLength: 64 }),
      os_hash_value: ro(['null', 'string'], 'Hexdigest of the image contents using the algorithm specified by the os_hash_algo', { maxLength: 128 }),
      owner: { type: ['null', 'string'], maxLength: 255, description: 'Owner of the image' },
      size: ro(['null', 'integer'], 'Size of image file in bytes'),
      virtual_size: ro(['null', 'integer'], 'Virtual size of image in bytes'),
      container_format: { type: ['null', 'string'], enum: [null, ...CONTAINER_FORMATS], description: 'Format of the container' },
      disk_format: { type: ['null', 'string'], enum: [null, ...DISK_FORMATS], description: 'Format of the disk' },
      created_at: ro('string', 'Date and time of image registration'),
      updated_at: ro('string', 'Date and time of the last image modification'),
      tags: { type: 'array', items: { type: 'string', maxLength: 255 }, description: 'List of strings related to the image' },
      direct_url: ro('string', 'URL to access the image file kept in external store'),
      min_ram: { type: 'integer', description: 'Amount of ram (in MB) required to boot image.' },
      min_disk: { type: 'integer', description: 'Amount of disk space (in GB) required to boot image.' },
      self: ro('string', 'An image self url'),
      file: ro('string', 'An image file url'),
      schema: ro('string', 'An image schema url'),
      // Ours, and not a string as other custom properties are: clients validating against this schema must see it named.
      mistify_increment_size: ro('integer', 'Size in bytes of the zfs increment from the image named by mistify_origin'),
      locations: {
        type: 'array',
        items: {
          type: 'object',
          required: ['url', 'metadata'],
          properties: { url: { type: 'string', maxLength: 255 }, metadata: { type: 'object' } },
        },
        description: 'A set of URLs to access the image file kept in external store',
      },
    },
  }
}

export function imagesSchema(): Record<string, unknown> {
  return {
    name: 'images',
    properties: {
      images: { type: 'array', items: imageSchema() },
      schema: { type: 'string' },
      first: { type: 'string' },
      next: { type: 'string' },
    },
    links: [
      { rel: 'first', href: '{first}' },
      { rel: 'next', href: '{next}' },
      { rel: 'describedby', href: '{schema}' },
    ],
  }
}
