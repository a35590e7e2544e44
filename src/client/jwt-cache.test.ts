import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { defaultJwtCacheDir, JwtCache, jwtCacheKey } from './jwt-cache.js'

const roots: string[] = []
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

function cacheDir(): string {
  const root = mkdtempSync(join(tmpdir(), 'jwt-cache-'))
  roots.push(root)
  return join(root, 'portcullis', 'jwt')
}

/** An unsigned compact JWT with the given payload (the cache never verifies signatures). */
function jwt(payload: Record<string, unknown>): string {
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  return `${part({ alg: 'ES256' })}.${part(payload)}.c2ln`
}

const NOW = 1_800_000_000_000

describe('JwtCache', () => {
  it('keeps one token per server and TLS use, as pomerium-cli keys it', () => {
    const cache = new JwtCache(cacheDir(), () => NOW)
    const a = jwt({ sub: 'a', exp: NOW / 1000 + 60 })
    const b = jwt({ sub: 'b', exp: NOW / 1000 + 60 })
    cache.set(jwtCacheKey('Proxy.Example.com:443', true), a)
    cache.set(jwtCacheKey('proxy.example.com:443', false), b)
    assert.equal(jwtCacheKey('Proxy.Example.com:443', true), 'proxy.example.com:443|true')
    assert.equal(cache.get('proxy.example.com:443|true'), a)
    assert.equal(cache.get('proxy.example.com:443|false'), b)
    assert.equal(cache.get('other.example.com:443|true'), undefined)
  })

  it('writes the directory 0700 and each token 0600, even into a directory that was open', () => {
    const dir = cacheDir()
    const cache = new JwtCache(dir, () => NOW)
    cache.set('s|true', jwt({ exp: NOW / 1000 + 60 }))
    assert.equal(statSync(dir).mode & 0o777, 0o700)
    const file = readdirSync(dir)[0] ?? ''
    assert.ok(file.endsWith('.jwt'))
    assert.equal(statSync(join(dir, file)).mode & 0o777, 0o600)
    assert.ok(!file.includes('s|true'), 'the server name never becomes a file name')
  })

  it('never returns a token past its exp, and removes it', () => {
    let now = NOW
    const dir = cacheDir()
    const cache = new JwtCache(dir, () => now)
    const token = jwt({ exp: NOW / 1000 + 30 })
    cache.set('s|true', token)
    now = NOW + 29_000
    assert.equal(cache.get('s|true'), token)
    now = NOW + 30_000
    assert.equal(cache.get('s|true'), undefined)
    assert.deepEqual(readdirSync(dir), [])
  })

  it('keeps a token without exp until the server refuses it (delete)', () => {
    const cache = new JwtCache(cacheDir(), () => NOW)
    const token = jwt({ sub: 'no-exp' })
    cache.set('s|true', token)
    assert.equal(cache.get('s|true'), token)
    cache.delete('s|true')
    assert.equal(cache.get('s|true'), undefined)
  })

  it('refuses to store what is not a JWT, and drops an unreadable cached file', () => {
    const dir = cacheDir()
    const cache = new JwtCache(dir, () => NOW)
    assert.throws(() => cache.set('s|true', 'not a token'), TypeError)
    assert.throws(() => cache.set('s|true', jwt({ exp: 'soon' })), TypeError)
    cache.set('s|true', jwt({ exp: NOW / 1000 + 60 }))
    const [file] = readdirSync(dir)
    writeFileSync(join(dir, file as string), 'garbage')
    assert.equal(cache.get('s|true'), undefined)
    assert.deepEqual(readdirSync(dir), [])
  })

  it('logout clears every token and says how many', () => {
    const dir = cacheDir()
    const cache = new JwtCache(dir, () => NOW)
    assert.equal(cache.clear(), 0, 'nothing cached yet (no directory)')
    cache.set('a|true', jwt({ exp: NOW / 1000 + 60 }))
    cache.set('b|true', jwt({ exp: NOW / 1000 + 60 }))
    assert.equal(cache.clear(), 2)
    assert.equal(cache.get('a|true'), undefined)
    assert.deepEqual(readdirSync(dir), [])
  })
})

describe('defaultJwtCacheDir', () => {
  it('uses an absolute XDG_CACHE_HOME, else ~/.cache', () => {
    assert.equal(defaultJwtCacheDir({ XDG_CACHE_HOME: '/var/cache/u' }, '/home/u'), '/var/cache/u/portcullis/jwt')
    assert.equal(defaultJwtCacheDir({}, '/home/u'), '/home/u/.cache/portcullis/jwt')
    assert.equal(defaultJwtCacheDir({ XDG_CACHE_HOME: 'relative' }, '/home/u'), '/home/u/.cache/portcullis/jwt')
  })
})
