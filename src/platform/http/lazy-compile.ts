/**
 * Route schemas compiled on first use rather than all at start. Fastify compiles every route's
 * validators (Ajv) and every response code's serializer (fast-json-stringify) in `ready()`: 1,085
 * compilations for this app, about five seconds of CPU, spent again by every node and test node
 * while most routes are never called by it. Here each compilation waits for the first request that
 * needs it, and a serving node compiles the rest with `warm()` once it is ready, between requests.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import SerializerSelector from '@fastify/fast-json-stringify-compiler'

/** Ajv's validate function as Fastify calls it: a verdict, with the errors on the function. */
export interface Validate {
  (data: unknown): boolean | Promise<unknown>
  errors?: unknown
}

type Serialize = (doc: unknown) => string

/** The line a serving node logs once every route schema is compiled (the benchmark waits for it). */
export const ROUTE_SCHEMAS_COMPILED = 'route schemas compiled'

/** A schema that did not compile, and where: `POST /store/carts body`, `GET /livez 200`. */
export interface CompileFailure {
  schema: string
  error: unknown
}

/** Holds the compilations no request has needed yet, so that warm() can do them ahead. */
export class LazyCompiler {
  private readonly pending = new Map<() => void, string>()

  /** A validator that compiles `compile()` on its first call; `label` names it in failures. */
  validator(compile: () => Validate, label: string): Validate {
    let validate: Validate | undefined
    const ensure = () => {
      validate ??= compile()
      this.pending.delete(ensure)
      return validate
    }
    this.pending.set(ensure, label)
    const lazy: Validate = (data) => {
      const compiled = ensure()
      const verdict = compiled(data)
      lazy.errors = compiled.errors
      return verdict
    }
    return lazy
  }

  /** A serializer that compiles `compile()` on its first call; `label` names it in failures. */
  serializer(compile: () => Serialize, label: string): Serialize {
    let serialize: Serialize | undefined
    const ensure = () => {
      serialize ??= compile()
      this.pending.delete(ensure)
      return serialize
    }
    this.pending.set(ensure, label)
    return (doc) => ensure()(doc)
  }

  /** Fastify's own serializer factory (fast-json-stringify), with each compilation deferred. */
  serializerFactory() {
    return (externalSchemas: unknown, options: unknown) => {
      const compile = SerializerSelector()(externalSchemas, options as never)
      return (route: Parameters<typeof compile>[0]) =>
        this.serializer(() => compile(route), `${route.method} ${route.url} ${route.httpStatus}`)
    }
  }

  /** How many compilations are still deferred. */
  get size(): number {
    return this.pending.size
  }

  /**
   * Compiles everything still deferred, in slices of `sliceMs` with pauses of `pauseMs` between
   * them: a loop kept busy would read as overload to load shedding (MAX_EVENT_LOOP_UTILIZATION)
   * and have requests refused while it lasts. Returns the schemas that failed to compile; each is
   * left for its route's first request to report as well.
   */
  async warm({ sliceMs = 5, pauseMs = 20 } = {}): Promise<CompileFailure[]> {
    const failures: CompileFailure[] = []
    const queue = [...this.pending]
    while (queue.length) {
      const until = performance.now() + sliceMs
      while (queue.length && performance.now() < until) {
        const [ensure, schema] = queue.shift()!
        if (!this.pending.has(ensure)) continue
        try {
          ensure()
        } catch (error) {
          this.pending.delete(ensure)
          failures.push({ schema, error })
        }
      }
      await sleep(pauseMs)
    }
    return failures
  }
}
