/** Image records in the metadata store, keyed by image id. */
import type { Db, Table } from '../store/db.js'
import type { ImageRecord } from './shapes.js'

export type ImageRecords = Table<ImageRecord>

export function imageRecords(db: Db): ImageRecords {
  return db.table<ImageRecord>('images')
}
