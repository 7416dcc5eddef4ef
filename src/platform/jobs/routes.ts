/** Admin view of jobs that exhausted their retries, with replay. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { problem } from '../http/errors.ts'
import { errorResponses, ListOf } from '../http/schemas.ts'
import type { Runtime } from '../runtime.ts'

const DeadJob = Type.Object({
  id: Type.String(),
  queue: Type.Union([Type.String(), Type.Null()], { description: 'The queue the job failed on' }),
  data: Type.Unknown({ description: 'The payload, without the fields listed in redacted' }),
  redacted: Type.Array(Type.String(), {
    description:
      'Payload fields its queue declares secret (one-time tokens, personal data), never listed; a replay still has them',
  }),
  error: Type.Unknown({ description: 'The last failure, as the handler threw it' }),
  retries: Type.Union([Type.Integer(), Type.Null()]),
  first_created_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  failed_at: Type.String({ format: 'date-time' }),
})

/** pg-boss job ids are UUIDs: checked here in full, since the database refuses any other text (a 500). */
const JobId = Type.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
})

export const jobsAdminRoutes: FastifyPluginAsync<{ runtime: Runtime }> = async (plain, { runtime }) => {
  const app = plain.withTypeProvider<TypeBoxTypeProvider>()
  app.get(
    '/admin/jobs/failed',
    {
      config: { permission: 'jobs:read' },
      schema: {
        tags: ['jobs'],
        summary: 'List jobs that failed every retry (the dead-letter queue)',
        security: [{ bearer: [] }],
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
            cursor: Type.Optional(JobId),
          },
          { additionalProperties: false },
        ),
        response: { 200: ListOf(DeadJob), ...errorResponses },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 20
      let jobs: Awaited<ReturnType<typeof runtime.jobs.deadLettered>>
      try {
        jobs = await runtime.jobs.deadLettered(limit + 1, request.query.cursor)
      } catch {
        throw problem('invalid_cursor', 'The cursor names a job that no longer exists')
      }
      const page = jobs.slice(0, limit)
      return {
        data: page.map((job) => ({
          id: job.id,
          queue: job.queue,
          data: job.data,
          redacted: job.redacted,
          error: job.error,
          retries: job.retries,
          first_created_at: job.firstCreatedOn?.toISOString() ?? null,
          failed_at: job.failedOn.toISOString(),
        })),
        next_cursor: jobs.length > limit ? (page[page.length - 1]?.id ?? null) : null,
      }
    },
  )

  app.post(
    '/admin/jobs/failed/:id/replay',
    {
      config: { permission: 'jobs:write' },
      schema: {
        tags: ['jobs'],
        summary: 'Send a dead-lettered job back to its queue for another run',
        security: [{ bearer: [] }],
        params: Type.Object({ id: JobId }),
        response: { 202: Type.Object({ replayed: Type.Literal(true) }), ...errorResponses },
      },
    },
    async (request, reply) => {
      const replayed = await runtime.jobs.replay(request.params.id)
      if (!replayed) throw problem('not_found', `No failed job ${request.params.id}`)
      reply.code(202)
      return { replayed: true as const }
    },
  )
}
