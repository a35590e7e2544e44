/**
 * Shared by the provider-token tests: hand-made keys and JWS (forgeries included), and a tiny
 * loopback issuer whose keys the test holds (discovery, JWKS, UserInfo, with request counts).
 */
import assert from 'node:assert/strict'
import { constants, createHmac, generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

import { ProviderTokenError } from './index.js'
import type { ProviderTokenErrorCode } from './index.js'
import type { IdpFetch } from '../oidc.js'

export const REDIRECT = 'http://127.0.0.1:9/oauth2/callback' // never requested: loginWithForm stops before it
export const CLIENT_ID = 'portcullis'
export const CLIENT_SECRET = 'portcullis-secret'
export const EMAIL = 'alice@example.com'
export const API = 'https://api.example.com'

// ---------------------------------------------------------------------------------------------
// Helpers

export function rejectsWith(code: ProviderTokenErrorCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ProviderTokenError, String(err))
    assert.equal(err.code, code, err.message)
    assert.equal(err.transient, code === 'ERR_PROVIDER_UNAVAILABLE')
    return true
  }
}

/** A fetch that records every URL it is asked for. */
export function countingFetch(): { fetch: IdpFetch; urls: string[] } {
  const urls: string[] = []
  return {
    urls,
    fetch: (url, init) => {
      urls.push(url)
      return fetch(url, init as RequestInit)
    },
  }
}

export const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

export interface TestKey {
  kid: string
  alg: string
  privateKey: KeyObject
  publicKey: KeyObject
  /** The public JWK as published (with kid, alg, use). */
  jwk: Record<string, unknown>
}

export function makeKey(alg = 'RS256', kid: string = randomUUID()): TestKey {
  const pair =
    alg.startsWith('RS') || alg.startsWith('PS')
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519')
  const jwk = { ...(pair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>), kid, alg, use: 'sig' }
  return { kid, alg, privateKey: pair.privateKey, publicKey: pair.publicKey, jwk }
}

/** A compact JWS over exactly these header and payload objects, signed with node:crypto. */
export function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject, alg = String(header.alg)): string {
  const input = Buffer.from(`${b64(header)}.${b64(payload)}`)
  let signature: Buffer
  if (alg.startsWith('RS')) signature = cryptoSign(`sha${alg.slice(2)}`, input, key)
  else if (alg.startsWith('PS')) {
    signature = cryptoSign(`sha${alg.slice(2)}`, input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
  } else if (alg === 'ES256') signature = cryptoSign('sha256', input, { key, dsaEncoding: 'ieee-p1363' })
  else signature = cryptoSign(null, input, key)
  return `${input.toString()}.${signature.toString('base64url')}`
}

/** An HMAC-SHA256 JWS whose secret is `secret` (the key-confusion forgery). */
export function hmacJws(header: Record<string, unknown>, payload: Record<string, unknown>, secret: string | Buffer): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
}

export function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index] ?? '', 'base64url').toString()) as Record<string, unknown>
}

export function replacePayload(token: string, payload: Record<string, unknown>): string {
  const [header = '', , signature = ''] = token.split('.')
  return `${header}.${b64(payload)}.${signature}`
}

// ---------------------------------------------------------------------------------------------
// A loopback issuer whose keys the test holds

export interface UserInfoAnswer {
  status: number
  body?: string
  type?: string
}

export interface KeyIssuer {
  issuer: string
  discovery: Record<string, unknown>
  jwks: { keys: Record<string, unknown>[] }
  hits: { discovery: number; jwks: number; userinfo: number; other: number }
  /** Decides UserInfo answers; default: 401. */
  userinfo: (authorization: string | undefined) => UserInfoAnswer
  /** When true the JWKS endpoint answers 503. */
  jwksDown: boolean
  close(): Promise<void>
}

export async function startKeyIssuer(): Promise<KeyIssuer> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    }
    if (path === '/.well-known/openid-configuration') {
      state.hits.discovery++
      return json(200, state.discovery)
    }
    if (path === '/jwks') {
      state.hits.jwks++
      return state.jwksDown ? json(503, {}) : json(200, state.jwks)
    }
    if (path === '/userinfo') {
      state.hits.userinfo++
      const answer = state.userinfo(req.headers.authorization)
      res.writeHead(answer.status, { 'content-type': answer.type ?? 'application/json' }).end(answer.body ?? '')
      return
    }
    state.hits.other++
    res.writeHead(404).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const state: KeyIssuer = {
    issuer,
    discovery: {
      issuer,
      jwks_uri: `${issuer}/jwks`,
      userinfo_endpoint: `${issuer}/userinfo`,
      id_token_signing_alg_values_supported: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256', 'none'],
    },
    jwks: { keys: [] },
    hits: { discovery: 0, jwks: 0, userinfo: 0, other: 0 },
    userinfo: () => ({ status: 401, body: '{"error":"invalid_token"}' }),
    jwksDown: false,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return state
}
