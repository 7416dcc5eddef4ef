import { Ajv } from 'ajv'
import { expect, it } from 'vitest'
import { LazyCompiler } from './lazy-compile.ts'

const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] }

it('compiles a validator on its first call and hands Fastify its errors', () => {
  const lazy = new LazyCompiler()
  let compiled = 0
  const ajv = new Ajv({ allErrors: true })
  const validate = lazy.validator(() => {
    compiled++
    return ajv.compile(schema)
  }, 'POST /n body')
  expect(compiled).toBe(0)
  expect(lazy.size).toBe(1)
  expect(validate({ n: 'x' })).toBe(false)
  expect(validate.errors).toMatchObject([{ instancePath: '/n', keyword: 'type' }])
  expect(validate({ n: 1 })).toBe(true)
  expect(validate.errors).toBeNull()
  expect(compiled).toBe(1)
  expect(lazy.size).toBe(0)
})

it('compiles a serializer on its first call, once', () => {
  const lazy = new LazyCompiler()
  const compile = lazy.serializerFactory()(undefined, undefined)
  const serialize = compile({ method: 'GET', url: '/', httpStatus: '200', schema })
  expect(lazy.size).toBe(1)
  // fast-json-stringify writes only what the schema declares.
  expect(serialize({ n: 2, secret: 'x' })).toBe('{"n":2}')
  expect(serialize({ n: 3 })).toBe('{"n":3}')
  expect(lazy.size).toBe(0)
})

it('warms every deferred compilation, and names and leaves a broken one for its first call', async () => {
  const lazy = new LazyCompiler()
  const ajv = new Ajv()
  const good = lazy.validator(() => ajv.compile(schema), 'POST /good body')
  const broken = lazy.validator(() => ajv.compile({ type: 'no-such-type' }), 'POST /broken body')
  expect(lazy.size).toBe(2)
  const failures = await lazy.warm({ pauseMs: 0 })
  expect(failures).toEqual([{ schema: 'POST /broken body', error: expect.any(Error) }])
  expect(lazy.size).toBe(0)
  expect(good({ n: 1 })).toBe(true)
  expect(() => broken({})).toThrow(/type/)
})
