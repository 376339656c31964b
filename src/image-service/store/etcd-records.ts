/**
 * Image records in etcd (v3 API), shared by stateless replicas. Layout of
 * mistify-image-service's etcd store: JSON at `<prefix>/images/<id>/metadata`
 * (default prefix `/lochness`), so its records are readable here. Ours add:
 *   <prefix>/images/<id>/owner    replica id, bound to that replica's lease, while it transfers the data
 *   <prefix>/image-names/<name>   {"last": n[, "claim"]}, the name's last version number (claim: the create that chose it)
 * Compare-and-swap is a transaction on the key's mod revision.
 */
import { randomUUID } from 'node:crypto'
import { Etcd3, isRecoverableError, type Lease } from 'etcd3'
import type { ImageRecord } from './store.js'
import { MetadataUnavailableError, normalizeRecord, type RecordBackend, type Rev, type TransferClaim, type Versioned } from './records.js'

export interface EtcdOptions {
  /** host:port of each member (plain http). */
  endpoints: string[]
  /** Key prefix, default /lochness. */
  prefix?: string
  /** Deadline of one call (ms): an unanswered call fails over to another member this soon. Default 1500. */
  callTimeoutMs?: number
  /** Lease TTL (s) of the transfer claims: a dead replica's transfers are orphaned this long after it died. Default 5. */
  leaseTtlS?: number
  /** Names this replica in owner keys (default: a random id). */
  replicaId?: string
}

interface LiveLease {
  lease: Lease
  id: string
  /** Aborted when the lease is (or may be) gone. */
  lost: AbortController
}

export class EtcdRecords implements RecordBackend {
  readonly kind = 'etcd'
  readonly shared = true
  readonly replicaId: string
  readonly prefix: string
  private readonly client: Etcd3
  private readonly ttlS: number
  private lease: Promise<LiveLease> | undefined
  private closed = false

  constructor(o: EtcdOptions) {
    this.prefix = (o.prefix ?? '/lochness').replace(/\/+$/, '')
    this.ttlS = o.leaseTtlS ?? 5
    this.replicaId = o.replicaId ?? randomUUID()
    const callTimeoutMs = o.callTimeoutMs ?? 1_500
    this.client = new Etcd3({
      hosts: o.endpoints.map((e) => `http://${e}`),
      // The client's default waits 5 s on a dead leader's member before retrying elsewhere
      // (7 s per write after a leader kill); a short deadline fails over at once. Streams
      // (lease keep-alives) must not get one: they live as long as the lease.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    })
  }

  private key(id: string): string {
    return `${this.prefix}/images/${id}/metadata`
  }

  private ownerKey(id: string): string {
    return `${this.prefix}/images/${id}/owner`
  }

  async get(id: string): Promise<Versioned | undefined> {
    const res = await call(() => this.client.get(this.key(id)).exec())
    const kv = res.kvs[0]
    return kv ? { value: normalizeRecord(JSON.parse(kv.value.toString()), id), rev: kv.mod_revision } : undefined
  }

  async list(): Promise<Versioned[]> {
    const base = `${this.prefix}/images/`
    const res = await call(() => this.client.getAll().prefix(base).exec())
    const out: Versioned[] = []
    for (const kv of res.kvs) {
      const key = kv.key.toString()
      const m = /^([^/]+)\/metadata$/.exec(key.slice(base.length))
      if (m?.[1]) out.push({ value: normalizeRecord(JSON.parse(kv.value.toString()), m[1]), rev: kv.mod_revision })
    }
    return out
  }

  async put(id: string, rec: ImageRecord, expectedRev: Rev | undefined): Promise<boolean> {
    const k = this.key(id)
    const res = await call(() => (expectedRev === undefined ? this.client.if(k, 'Version', '==', 0) : this.client.if(k, 'Mod', '==', expectedRev))
      .then(this.client.put(k).value(JSON.stringify(rec)))
      .commit())
    return res.succeeded
  }

  async del(id: string, expectedRev: Rev): Promise<boolean> {
    const k = this.key(id)
    const res = await call(() => this.client.if(k, 'Mod', '==', expectedRev).then(this.client.delete().key(k)).commit())
    return res.succeeded
  }

  async nextVersion(name: string): Promise<number> {
    const k = `${this.prefix}/image-names/${name}`
    for (;;) {
      const kv = (await call(() => this.client.get(k).exec())).kvs[0]
      const last = kv ? Number((JSON.parse(kv.value.toString()) as { last?: number }).last ?? 0) : 0
      const next = last + 1
      const res = await call(() => (kv ? this.client.if(k, 'Mod', '==', kv.mod_revision) : this.client.if(k, 'Version', '==', 0))
        .then(this.client.put(k).value(JSON.stringify({ last: next })))
        .commit())
      // A commit that timed out but happened makes the retry skip a number: gaps are fine, reuse is not.
      if (res.succeeded) return next
    }
  }

  async claimVersion(name: string, n: number, claim: string): Promise<boolean> {
    const k = `${this.prefix}/image-names/${name}`
    for (;;) {
      const kv = (await call(() => this.client.get(k).exec())).kvs[0]
      const cur = kv ? (JSON.parse(kv.value.toString()) as { last?: number; claim?: string }) : {}
      // Our own earlier attempt, whose commit timed out after it happened.
      if (cur.last === n && cur.claim === claim) return true
      if (Number(cur.last ?? 0) >= n) return false
      const res = await call(() => (kv ? this.client.if(k, 'Mod', '==', kv.mod_revision) : this.client.if(k, 'Version', '==', 0))
        .then(this.client.put(k).value(JSON.stringify({ last: n, claim })))
        .commit())
      if (res.succeeded) return true
    }
  }

  async claimTransfer(id: string): Promise<TransferClaim> {
    const live = await this.liveLease()
    const k = this.ownerKey(id)
    await call(() => this.client.put(k).value(this.replicaId).lease(live.id).exec())
    const signal = live.lost.signal
    return {
      signal,
      release: async () => {
        // Only our own claim: after a lost lease another replica may own the key.
        if (!signal.aborted) await call(() => this.client.if(k, 'Lease', '==', live.id).then(this.client.delete().key(k)).commit())
      },
    }
  }

  async putIfUnowned(id: string, rec: ImageRecord, expectedRev: Rev): Promise<boolean> {
    const k = this.key(id)
    const res = await call(() => this.client.if(k, 'Mod', '==', expectedRev).and(this.ownerKey(id), 'Version', '==', 0)
      .then(this.client.put(k).value(JSON.stringify(rec)))
      .commit())
    return res.succeeded
  }

  async health(): Promise<void> {
    await call(() => this.client.get(`${this.prefix}/health`).exec())
  }

  async close(): Promise<void> {
    this.closed = true
    const l = await this.lease?.catch(() => undefined)
    if (l && !l.lost.signal.aborted) await l.lease.revoke().catch(() => {})
    this.client.close()
  }

  /** Test hook: the id of the lease this replica's claims are bound to (undefined before the first claim). */
  async leaseId(): Promise<string | undefined> {
    return (await this.lease?.catch(() => undefined))?.id
  }

  /**
   * One lease per replica, shared by all its claims: when the replica dies,
   * every claim it held goes with it. A lost lease is replaced on the next claim.
   */
  private liveLease(): Promise<LiveLease> {
    if (this.closed) return Promise.reject(new MetadataUnavailableError('metadata store closed'))
    const cur = this.lease
    if (cur) return cur.then((l) => (l.lost.signal.aborted ? this.newLease(cur) : l))
    return this.newLease(undefined)
  }

  private newLease(old: Promise<LiveLease> | undefined): Promise<LiveLease> {
    if (this.lease !== old) return this.liveLease() // another caller replaced it already
    const p = (async (): Promise<LiveLease> => {
      const lease = this.client.lease(this.ttlS)
      const lost = new AbortController()
      let lastOk = Date.now()
      // The client only reports a loss at twice the TTL; by the TTL etcd may have dropped
      // the lease and a sweep may have marked our transfers, so stop them then.
      const watchdog = setInterval(() => { if (Date.now() - lastOk > this.ttlS * 1000) giveUp() }, 250)
      watchdog.unref()
      const giveUp = (): void => {
        clearInterval(watchdog)
        if (!lost.signal.aborted) lost.abort(new MetadataUnavailableError('lease lost'))
        lease.release()
      }
      lease.on('keepaliveSucceeded', () => { lastOk = Date.now() })
      lease.on('lost', giveUp)
      let id: string
      try {
        id = await call(() => lease.grant())
      } catch (err) {
        giveUp()
        throw err
      }
      lastOk = Date.now()
      return { lease, id, lost }
    })()
    this.lease = p
    p.catch(() => { if (this.lease === p) this.lease = undefined })
    return p
  }
}

/** etcd failures a retry may fix become MetadataUnavailableError (HTTP 503). */
async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof Error && (isRecoverableError(err) || /deadline|unavailable|no leader|leader changed|timed out|ECONNREFUSED|circuit/i.test(err.message))) {
      throw new MetadataUnavailableError(`metadata store unavailable: ${err.message}`, { cause: err })
    }
    throw err
  }
}
