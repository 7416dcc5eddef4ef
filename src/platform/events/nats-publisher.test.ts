import { randomBytes, randomUUID } from 'node:crypto'
import { DeliverPolicy, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DomainEvent, NatsPublisher } from './nats-publisher.ts'

const natsUrl = process.env.NATS_URL

function event(type: string, overrides: Partial<DomainEvent> = {}): DomainEvent {
  return {
    id: randomUUID(),
    type,
    subject_id: 'prod_1',
    payload: { title: 'Mug', price: 1200 },
    occurred_at: new Date().toISOString(),
    sequence: 1,
    ...overrides,
  }
}

describe.runIf(natsUrl)('NatsPublisher', () => {
  // Streams may not overlap subjects, so each run gets its own subject space as well as its own stream.
  const suffix = randomBytes(6).toString('hex')
  const stream = `SW_TEST_${suffix}`
  const subjectPrefix = `sw_test_${suffix}.events`
  let publisher: NatsPublisher
  let nc: NatsConnection
  let jsm: JetStreamManager

  beforeAll(async () => {
    nc = await connect({ servers: natsUrl })
    jsm = await jetstreamManager(nc)
    publisher = await NatsPublisher.connect({ url: natsUrl!, stream, subjectPrefix })
  })

  afterAll(async () => {
    await publisher?.close()
    await jsm?.streams.delete(stream).catch(() => undefined)
    await nc?.close()
  })

  it('creates the stream over the subject prefix with a ten-minute duplicate window', async () => {
    const info = await jsm.streams.info(stream)
    expect(info.config.subjects).toEqual([`${subjectPrefix}.>`])
    expect(info.config.duplicate_window).toBe(nanos(600_000))
  })

  it('stores an event under its type subject with the whole event as body', async () => {
    const placed = event('order.placed')
    const ack = await publisher.publish(placed)
    expect(ack.stream).toBe(stream)
    expect(ack.duplicate).toBe(false)

    const stored = await jsm.streams.getMessage(stream, { seq: ack.seq })
    expect(stored).not.toBeNull()
    expect(stored!.subject).toBe(`${subjectPrefix}.order.placed`)
    expect(stored!.json<DomainEvent>()).toEqual(placed)
    expect(stored!.header.get('Nats-Msg-Id')).toBe(placed.id)
  })

  it('stores an event published twice only once', async () => {
    const before = (await jsm.streams.info(stream)).state.messages
    const created = event('product.created', { subject_id: null })
    const first = await publisher.publish(created)
    const second = await publisher.publish(created)
    expect(first.duplicate).toBe(false)
    expect(second.duplicate).toBe(true)
    expect(second.seq).toBe(first.seq)
    expect((await jsm.streams.info(stream)).state.messages).toBe(before + 1)
  })

  it('delivers events to an ordered consumer in publish order', async () => {
    const events = [event('cart.updated'), event('cart.updated'), event('cart.checked_out')]
    const acks = []
    for (const e of events) acks.push(await publisher.publish(e))

    const consumer = await jetstream(nc).consumers.get(stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: acks[0]!.seq,
      filter_subjects: `${subjectPrefix}.cart.>`, // a single filter: multiple filters need server 2.10
    })
    const received: DomainEvent[] = []
    const messages = await consumer.consume()
    try {
      for await (const message of messages) {
        received.push(message.json<DomainEvent>())
        if (received.length === events.length) break
      }
    } finally {
      await messages.close()
    }
    expect(received).toEqual(events)
  })

  it('leaves an existing stream alone when another publisher connects', async () => {
    const before = await jsm.streams.info(stream)
    const second = await NatsPublisher.connect({ url: natsUrl!, stream, subjectPrefix })
    try {
      const after = await jsm.streams.info(stream)
      expect(after.created).toEqual(before.created)
      expect(after.state.messages).toBe(before.state.messages)
      await second.ping()
    } finally {
      await second.close()
    }
  })

  it('rejects an event type that is not a subject token sequence', async () => {
    await expect(publisher.publish(event('order placed'))).rejects.toThrow(/not a valid NATS subject/)
    await expect(publisher.publish(event('order.*'))).rejects.toThrow(/not a valid NATS subject/)
    await expect(publisher.publish(event(''))).rejects.toThrow(/not a valid NATS subject/)
  })

  it('answers ping while connected and rejects after close', async () => {
    const temporary = await NatsPublisher.connect({ url: natsUrl!, stream, subjectPrefix })
    await temporary.ping()
    await temporary.close()
    await temporary.close() // idempotent
    await expect(temporary.ping()).rejects.toThrow()
  })
})
