/** Resolve a request's relative id to an existing dataset, with the original's sentinel errors. */
import { InvalidParamsError, NotFoundError } from '../errors.js'
import { DatasetNotFoundError, InvalidDatasetNameError, type Dataset, type Zfs } from '../../zfs/index.js'
import { INVALID_DATASET, type FenceOptions, type Scope } from './scope.js'

export const NEED_AN_ID = 'need an id'

export async function lookup(zfs: Zfs, scope: Scope, id: string, o: FenceOptions & { signal?: AbortSignal | undefined } = {}): Promise<Dataset> {
  if (!id) throw new InvalidParamsError(NEED_AN_ID)
  const name = scope.resolve(id, o)
  return getExisting(zfs, name, o.signal)
}

export async function getExisting(zfs: Zfs, name: string, signal?: AbortSignal): Promise<Dataset> {
  try {
    return await zfs.getDataset(name, { signal })
  } catch (e) {
    if (e instanceof DatasetNotFoundError) throw new NotFoundError('not found', { cause: e })
    if (e instanceof InvalidDatasetNameError) throw new InvalidParamsError(INVALID_DATASET, { cause: e })
    throw e
  }
}
