/**
 * Publishes domain events to NATS JetStream for consumers outside this process (search indexers,
 * analytics, other services).
 *
 * The same event can be handed over more than once (a retry after publishing succeeded but before the
 * sender recorded it). The event id doubles as the JetStream message id, so the stream drops those
 * repeats within its duplicate window instead of every consumer having to.
 */
import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type PubAck,
} from '@nats-io/jetstream'
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node'
import type { Logger } from 'pino'

export interface DomainEvent {
  id: string
  type: string
  subject_id: string | null
  payload: Record<string, unknown>
  occurred_at: string
  /**
   * Taken when the event was written. A subject's events, written by the transactions that change
   * it one after another, increase with it: consumers order them by it (delivery order is not).
   */
  sequence: number
}

export interface NatsPublisherOptions {
  url: string
  /** JetStream stream that stores the events; created on connect when missing. */
  stream: string
  /** First subject tokens; events go to `<subjectPrefix>.<event.type>`. Default 'shopwright.events'. */
  subjectPrefix?: string
  logger?: Logger
}

/**
 * How long the stream remembers an event id. An event published by a worker that died before it
 * recorded so is sent again once its job's heartbeats stop (jobs.ts: up to about 90 s) and its
 * retry delay passes; the window covers that many times over, so the repeat is dropped.
 */
export const DUPLICATE_WINDOW_MS = 10 * 60_000
const PING_TIMEOUT_MS = 2_000
// Dot-separated tokens without NATS wildcards or whitespace: anything else would publish to a subject
// the stream does not capture (or fail on the server with a less helpful error).
const SUBJECT = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/

export class NatsPublisher {
  readonly stream: string
  readonly subjectPrefix: string
  readonly #nc: NatsConnection
  readonly #js: JetStreamClient
  readonly #logger: Logger | undefined

  private constructor(nc: NatsConnection, stream: string, subjectPrefix: string, logger: Logger | undefined) {
    this.#nc = nc
    this.#js = jetstream(nc)
    this.stream = stream
    this.subjectPrefix = subjectPrefix
    this.#logger = logger
  }

  /** Connects and ensures the stream exists; rejects when NATS is unreachable, so start-up fails fast. */
  static async connect(options: NatsPublisherOptions): Promise<NatsPublisher> {
    const subjectPrefix = options.subjectPrefix ?? 'shopwright.events'
    if (!SUBJECT.test(subjectPrefix)) throw new Error(`invalid NATS subject prefix: ${subjectPrefix}`)
    const nc = await connect({
      servers: options.url,
      name: 'shopwright',
      // Keep trying for as long as the process runs: a NATS restart must not silently end publishing.
      maxReconnectAttempts: -1,
    })
    try {
      const publisher = new NatsPublisher(nc, options.stream, subjectPrefix, options.logger)
      await publisher.#ensureStream(await jetstreamManager(nc))
      publisher.#watchStatus()
      return publisher
    } catch (err) {
      await nc.close()
      throw err
    }
  }

  /**
   * Publishes to `<subjectPrefix>.<event.type>` and resolves once JetStream has stored it. A repeat of
   * an id seen within the duplicate window resolves too, with `duplicate: true` and nothing stored.
   */
  async publish(event: DomainEvent): Promise<PubAck> {
    if (!SUBJECT.test(event.type)) throw new Error(`event type is not a valid NATS subject: ${event.type}`)
    const ack = await this.#js.publish(`${this.subjectPrefix}.${event.type}`, JSON.stringify(event), {
      msgID: event.id,
    })
    if (ack.duplicate)
      this.#logger?.debug({ eventId: event.id, seq: ack.seq }, 'duplicate event dropped by stream')
    return ack
  }

  /** Round trip to the server; rejects when disconnected, closed or too slow to answer. */
  async ping(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`NATS did not answer within ${PING_TIMEOUT_MS} ms`)),
        PING_TIMEOUT_MS,
      )
    })
    try {
      await Promise.race([this.#nc.rtt(), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Drains, so publishes already sent are flushed before the connection closes. */
  async close(): Promise<void> {
    if (this.#nc.isClosed() || this.#nc.isDraining()) {
      await this.#nc.closed()
      return
    }
    await this.#nc.drain()
  }

  async #ensureStream(jsm: JetStreamManager): Promise<void> {
    const subjects = [`${this.subjectPrefix}.>`]
    try {
      const info = await jsm.streams.info(this.stream)
      // An operator may have tuned the stream (retention, replicas): leave it, but say when it cannot work.
      if (!info.config.subjects?.some((subject) => subject === subjects[0] || subject === '>')) {
        this.#logger?.warn(
          { stream: this.stream, subjects: info.config.subjects, expected: subjects[0] },
          'existing NATS stream does not capture the event subjects',
        )
      }
      if (info.config.duplicate_window < nanos(DUPLICATE_WINDOW_MS)) {
        this.#logger?.warn(
          {
            stream: this.stream,
            duplicate_window_ms: info.config.duplicate_window / 1e6,
            expected_ms: DUPLICATE_WINDOW_MS,
          },
          'existing NATS stream forgets event ids early: an event resent after a worker died may be stored twice',
        )
      }
      return
    } catch (err) {
      if (!isStreamNotFound(err)) throw err
    }
    try {
      await jsm.streams.add({ name: this.stream, subjects, duplicate_window: nanos(DUPLICATE_WINDOW_MS) })
      this.#logger?.info({ stream: this.stream, subjects }, 'created NATS stream')
    } catch (err) {
      // Another node may have created it between our lookup and add; that is as good as ours.
      await jsm.streams.info(this.stream).catch(() => {
        throw err
      })
    }
  }

  #watchStatus(): void {
    // Runs until the connection closes; the iterator ends then.
    void (async () => {
      for await (const status of this.#nc.status()) {
        if (status.type === 'disconnect') this.#logger?.warn({ server: status.server }, 'NATS disconnected')
        else if (status.type === 'reconnect')
          this.#logger?.info({ server: status.server }, 'NATS reconnected')
        else if (status.type === 'error') this.#logger?.error({ err: status.error }, 'NATS error')
      }
    })().catch((err: unknown) => this.#logger?.error({ err }, 'NATS status watcher failed'))
  }
}

function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound
}
