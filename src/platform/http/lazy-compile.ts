/**
 * Route schemas compiled on first use rather than all at start. Fastify compiles every route's
 * validators (Ajv) and every response code's serializer (fast-json-stringify) in `ready()`: 1,085
 * compilations for this app, about five seconds of CPU, spent again by every node and test node
 * while most routes are never called by it. Here each compilation waits for the route's first
 * request, and a serving node compiles the rest with `warm()` once it is ready, between requests.
 */
import { setImmediate as nextTurn } from 'node:timers/promises'
import SerializerSelector from '@fastify/fast-json-stringify-compiler'

/** Ajv's validate function as Fastify calls it: a verdict, with the errors on the function. */
export interface Validate {
  (data: unknown): boolean | Promise<unknown>
  errors?: unknown
}

type Serialize = (doc: unknown) => string

/** Holds the compilations no request has needed yet, so that warm() can do them ahead. */
export class LazyCompiler {
  private readonly pending = new Set<() => void>()

  /** A validator that compiles `compile()` on its first call. */
  validator(compile: () => Validate): Validate {
    let validate: Validate | undefined
    const ensure = () => {
      validate ??= compile()
      this.pending.delete(ensure)
      return validate
    }
    this.pending.add(ensure)
    const lazy: Validate = (data) => {
      const compiled = ensure()
      const verdict = compiled(data)
      lazy.errors = compiled.errors
      return verdict
    }
    return lazy
  }

  /** A serializer that compiles `compile()` on its first call. */
  serializer(compile: () => Serialize): Serialize {
    let serialize: Serialize | undefined
    const ensure = () => {
      serialize ??= compile()
      this.pending.delete(ensure)
      return serialize
    }
    this.pending.add(ensure)
    return (doc) => ensure()(doc)
  }

  /** Fastify's own serializer factory (fast-json-stringify), with each compilation deferred. */
  serializerFactory() {
    return (externalSchemas: unknown, options: unknown) => {
      const compile = SerializerSelector()(externalSchemas, options as never)
      return (route: Parameters<typeof compile>[0]) => this.serializer(() => compile(route))
    }
  }

  /** How many compilations are still deferred. */
  get size(): number {
    return this.pending.size
  }

  /**
   * Compiles everything still deferred, one schema per turn of the event loop so that requests
   * arriving meanwhile wait for one compilation at most. A schema that fails to compile is left
   * for its first request to report.
   */
  async warm(): Promise<void> {
    for (const ensure of [...this.pending]) {
      try {
        ensure()
      } catch {
        this.pending.delete(ensure)
      }
      await nextTurn()
    }
  }
}
