/** Configuration: every setting validated once, bad values named, production refuses unsafe defaults. */
import { spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.ts'

const dataDir = mkdtempSync(join(tmpdir(), 'sw-config-'))
const base = { DATA_DIR: dataDir }
const secret = 'x'.repeat(40)

describe('config', () => {
  it('has working defaults for a laptop: embedded database, generated secrets kept across restarts', () => {
    const config = loadConfig(base)
    expect(config).toMatchObject({
      env: 'development',
      host: '127.0.0.1',
      port: 3000,
      databaseUrl: undefined,
    })
    expect(config.appSecret.length).toBeGreaterThanOrEqual(32)
    expect(loadConfig(base).appSecret).toBe(config.appSecret)
    expect(loadConfig(base).adminToken).toBe(config.adminToken)
  })

  it('reads the manual payment methods as a list, or none', () => {
    expect(loadConfig(base).paymentManualMethods).toEqual(['bank_transfer', 'cash_on_delivery'])
    expect(
      loadConfig({ ...base, PAYMENT_MANUAL_METHODS: ' cash_on_delivery ' }).paymentManualMethods,
    ).toEqual(['cash_on_delivery'])
    expect(loadConfig({ ...base, PAYMENT_MANUAL_METHODS: 'none' }).paymentManualMethods).toEqual([])
  })

  it.each([
    ['PORT', 'abc', /PORT=abc is invalid: expected an integer from 0 to 65535/],
    ['PORT', '70000', /PORT=70000 is invalid/],
    ['DATABASE_URL', 'mysql://x', /DATABASE_URL is invalid: expected a postgres: or postgresql: URL/],
    ['DATABASE_URL', 'not a url', /DATABASE_URL is invalid/],
    ['REDIS_URL', 'http://x', /REDIS_URL is invalid/],
    ['RUN_WORKERS', 'maybe', /RUN_WORKERS=maybe is invalid: expected true or false/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL=loud is invalid: expected one of/],
    ['APP_SECRET', 'short', /APP_SECRET is too short/],
    ['CORS_ORIGINS', 'shop.example.com', /CORS_ORIGINS has shop.example.com/],
    ['MAX_EVENT_LOOP_UTILIZATION', '2', /MAX_EVENT_LOOP_UTILIZATION=2 is invalid/],
    ['PAYMENT_MANUAL_METHODS', 'cheque', /PAYMENT_MANUAL_METHODS has cheque: expected bank_transfer/],
  ])('names %s when it is %s', (name, value, message) => {
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(ConfigError)
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(message)
  })

  it('refuses insecure defaults in production', () => {
    const prod = { ...base, NODE_ENV: 'production' }
    expect(() => loadConfig(prod)).toThrow(/DATABASE_URL is required in production/)
    const withDb = { ...prod, DATABASE_URL: 'postgres://localhost/shop' }
    expect(() => loadConfig(withDb)).toThrow(/APP_SECRET is required in production/)
    expect(() => loadConfig({ ...withDb, APP_SECRET: secret, CORS_ORIGINS: '*' })).toThrow(
      /CORS_ORIGINS=\* is refused/,
    )
    const ok = loadConfig({ ...withDb, APP_SECRET: secret, CORS_ORIGINS: 'https://shop.example.com' })
    expect(ok.adminToken).toBeUndefined()
    expect(ok.seedDemo).toBe(false)
    // Test cards always pay: a production store must ask for them explicitly.
    expect(ok.paymentTestGateway).toBe(false)
    expect(loadConfig(base).paymentTestGateway).toBe(true)
    expect(
      loadConfig({ ...prod, APP_SECRET: secret, ALLOW_EMBEDDED_DATABASE: 'true' }).databaseUrl,
    ).toBeUndefined()
  })

  it('stops the server with one clear line and exit code 1', () => {
    const result = spawnSync(process.execPath, ['src/main.ts'], {
      env: { ...process.env, ...base, PORT: 'abc' },
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(result.status).toBe(1)
    expect(result.stderr.trim()).toBe('shopwright: PORT=abc is invalid: expected an integer from 0 to 65535')
  })
})
