/**
 * `publish SNAPSHOT --name NAME`: a snapshot the agent holds becomes the next
 * version of NAME on the image service: its full stream, and, when the agent
 * still holds the snapshot the previous version was published from (same
 * guid), the increment from it, so agents holding that version fetch only
 * what changed. Both stream from the agent to the service through here.
 */
import type { AgentClient } from './client.js'
import { AgentRefused, TransportError } from './client.js'
import type { ImageServiceClient, ServiceImage } from './image-service.js'

export interface Published {
  image: ServiceImage
  /** Why no increment was stored, when none was. */
  noIncrement?: string
}

export async function publish(agent: AgentClient, service: ImageServiceClient, o: { snapshot: string; name: string; version?: number | undefined; type: string }): Promise<Published> {
  const prev = await service.latest(o.name)
  const full = await agent.download(o.snapshot, false)
  let image = await service.upload(full.res, { name: o.name, version: o.version, type: o.type })
  if (!prev) return { image, noIncrement: `${o.name} had no earlier version` }
  if (!prev.snapshot_guid) return { image, noIncrement: `the previous version ${prev.id} is not a zfs stream with a known snapshot` }
  if (!image.snapshot_guid) return { image, noIncrement: `${o.snapshot}'s stream carried no snapshot guid the service could read` }
  if (prev.snapshot_guid === image.snapshot_guid) return { image, noIncrement: `the previous version ${prev.id} is this same snapshot` }
  // The agent resolves the guid among this dataset's snapshots (and its origin's): no base, no increment.
  const status = await agent.probe(o.snapshot, prev.snapshot_guid)
  if (status !== 200) return { image, noIncrement: `the agent holds no snapshot with the previous version's guid ${prev.snapshot_guid} (HTTP ${status})` }
  const incr = await agent.download(o.snapshot, false, prev.snapshot_guid)
  try {
    image = await service.uploadIncrement(image.id, prev.id, incr.res)
  } catch (e) {
    // The full version is published and usable: say what is missing rather than fail the whole publish.
    if (e instanceof AgentRefused) return { image, noIncrement: `the increment was refused: ${e.message}` }
    throw new TransportError(`${image.id} is published (its full stream), but its increment was cut: ${(e as Error).message}`)
  }
  return { image }
}
