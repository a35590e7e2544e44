/**
 * downstream_mtls (client certificates) in the data plane, with real certificates made by openssl:
 * - client-cert.ts on its own: the policy from config, the ClientCertificateInfo fields (checked
 *   against openssl's own output), SAN matching, max_verify_depth and CRLs;
 * - an in-process ProxyServer with an authorizer that records every CheckRequest, to see what
 *   reaches authorization over HTTP/1.1, HTTP/2, the PROXY-protocol path and across reloads
 *   (the 495 answer itself belongs to the authorizer);
 * - the built `portcullis` process: `reject_connection` handshakes, and /healthz and /ping
 *   without a certificate under the default enforcement.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as http2 from 'node:http2'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tls from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { stringify } from 'yaml'
import type { CheckRequest, ClientCertificateInfo } from '../../src/authorize/types.js'
import { loadConfig } from '../../src/config/index.js'
import type { Config } from '../../src/config/index.js'
import { buildClientCertPolicy, clientCertificateInfo, formatIp, matchesSubjectAltNames, parseCrl, rfc2253 } from '../../src/proxy/client-cert.js'
import type { ClientCertPolicy } from '../../src/proxy/client-cert.js'
import { ProxyServer } from '../../src/proxy/server.js'
import { createLogger } from '../../src/shared/log.js'
import { makeCa, makeClientCertWithSans, makeCrl, makeIntermediateCa, testPki } from '../fixtures/certs.js'
import type { CertKeyPair } from '../fixtures/certs.js'
import { isBuilt, request, startPortcullis, statusCodes } from '../fixtures/portcullis.js'
import type { PortcullisProcess } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { Upstream } from '../fixtures/upstreams.js'

const pki = testPki()
const clientCa = makeCa('mTLS Client CA')
const issuingCa = makeIntermediateCa(clientCa, 'mTLS Issuing CA')
const otherCa = makeCa('mTLS Other CA')

const ALICE_SANS = [
  'DNS:alice.corp.example',
  'email:alice@corp.example',
  'URI:spiffe://corp.example/alice',
  'IP:10.1.2.3',
  'IP:2001:db8::1',
  'otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@CORP.EXAMPLE',
]
const alice = makeClientCertWithSans(clientCa, 'alice', { sans: ALICE_SANS })
const mallory = makeClientCertWithSans(clientCa, 'mallory', { sans: ['DNS:mallory.corp.example'] })
const noSans = makeClientCertWithSans(clientCa, 'no-sans')
const serverOnly = makeClientCertWithSans(clientCa, 'server-only', { sans: ['DNS:server-only.corp.example'], serverAuthOnly: true })
const bobLeaf = makeClientCertWithSans(issuingCa, 'bob', { sans: ['DNS:bob.corp.example'] })
/** Bob sends his certificate with the intermediate that issued it: leaf -> issuing CA -> client CA. */
const bob: CertKeyPair = { ...bobLeaf, certPem: bobLeaf.certPem + issuingCa.certPem }
const stranger = makeClientCertWithSans(otherCa, 'stranger', { sans: ['DNS:stranger.corp.example'] })
const crl = makeCrl(clientCa, [mallory])

const x509 = (pair: CertKeyPair): X509Certificate => new X509Certificate(pair.certPem)
const openssl = (args: readonly string[], input?: string | Buffer): Buffer => execFileSync('openssl', args, { input: input ?? '', stdio: ['pipe', 'pipe', 'ignore'] })

function policyOf(raw: Record<string, unknown>): ClientCertPolicy {
  const p = buildClientCertPolicy(raw)
  assert.ok(p, 'a policy is built when a CA is set')
  return p
}

/** The info client-cert.ts computes for `pair` once OpenSSL has verified the chain. */
function infoOf(pair: CertKeyPair, policy: ClientCertPolicy, intermediates: readonly CertKeyPair[] = [], opensslError?: string): ClientCertificateInfo {
  return clientCertificateInfo(x509(pair), intermediates.map(x509), opensslError, policy)
}

void describe('client-cert.ts: downstream_mtls policy', () => {
  it('no policy without a CA (Pomerium asks for no certificate then); defaults as in Pomerium', () => {
    assert.equal(buildClientCertPolicy(undefined), undefined)
    assert.equal(buildClientCertPolicy({ enforcement: 'reject_connection' }), undefined)
    const p = policyOf({ ca: clientCa.certPem })
    assert.equal(p.enforcement, 'policy_with_default_deny')
    assert.equal(p.maxVerifyDepth, 1)
    assert.equal(p.broken, undefined)
    assert.equal(p.anchors.length, 1)
    assert.equal(policyOf({ ca: clientCa.certPem + otherCa.certPem, enforcement: 'reject_connection', max_verify_depth: 0 }).anchors.length, 2)
  })

  it('settings that cannot be used make the policy fail closed, with every problem named', () => {
    const p = policyOf({
      ca: clientCa.certPem,
      crl: 'not a crl',
      match_subject_alt_names: [{ dns: '(' }, { phone: '.*' }, { dns: 'a', email: 'b' }, 'x'],
      max_verify_depth: -1,
    })
    assert.ok(p.broken)
    assert.equal(p.errors.length, 6, p.errors.join('\n'))
    assert.match(p.errors.join('\n'), /downstream_mtls\.crl: expected PEM "X509 CRL" blocks/)
    assert.match(p.errors.join('\n'), /\[0\]\.dns: invalid regular expression/)
    assert.match(p.errors.join('\n'), /unknown SAN type "phone"/)
    assert.match(p.errors.join('\n'), /max_verify_depth/)
    const info = infoOf(alice, p)
    assert.equal(info.presented, true)
    assert.equal(info.valid, false)
    assert.match(info.problem ?? '', /downstream_mtls is invalid/)
    // A CA that holds no certificate: nothing can verify.
    assert.match(policyOf({ ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }).broken ?? '', /ca/)
  })

  it('SAN types are case-insensitive, as Pomerium reads them', () => {
    const p = policyOf({ ca: clientCa.certPem, match_subject_alt_names: [{ DNS: 'alice\\.corp\\.example' }, { User_Principal_Name: '.*' }] })
    assert.equal(p.broken, undefined)
    assert.deepEqual(p.sanMatchers.map((m) => m.type), ['dns', 'user_principal_name'])
  })
})

void describe('client-cert.ts: ClientCertificateInfo', () => {
  const policy = policyOf({ ca: clientCa.certPem })

  it('fingerprint (SHA-256 of the DER, lower hex), SPKI hash (base64), subject, issuer, serial, SANs and PEM match openssl', () => {
    const info = infoOf(alice, policy)
    assert.equal(info.presented, true)
    assert.equal(info.valid, true, info.problem)
    assert.equal(info.problem, undefined)
    assert.ok(!('problem' in info), 'no problem key on a valid certificate')

    const fp = openssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', alice.certFile]).toString().trim()
    assert.equal(info.fingerprintSha256, fp.replace(/^.*=/, '').replace(/:/g, '').toLowerCase())
    assert.match(info.fingerprintSha256, /^[0-9a-f]{64}$/)

    const spkiDer = openssl(['pkey', '-pubin', '-outform', 'DER'], openssl(['x509', '-noout', '-pubkey', '-in', alice.certFile]))
    const spki = openssl(['dgst', '-sha256', '-binary'], spkiDer).toString('base64')
    assert.equal(info.spkiSha256, spki)

    assert.equal(info.subject, 'CN=alice')
    assert.equal(info.issuer, 'CN=mTLS Client CA')
    const serial = openssl(['x509', '-noout', '-serial', '-in', alice.certFile]).toString().trim().replace(/^serial=/, '')
    assert.equal(info.serialNumber, serial.toLowerCase())

    assert.deepEqual(info.sanDns, ['alice.corp.example'])
    assert.deepEqual(info.sanEmail, ['alice@corp.example'])
    assert.deepEqual(info.sanUri, ['spiffe://corp.example/alice'])
    assert.deepEqual(info.sanIp, ['10.1.2.3', '2001:db8::1'])
    assert.equal(info.leafPem.trim(), alice.certPem.trim())
    // Exactly the contract's fields.
    assert.deepEqual(Object.keys(info).sort(), ['fingerprintSha256', 'issuer', 'leafPem', 'presented', 'sanDns', 'sanEmail', 'sanIp', 'sanUri', 'serialNumber', 'spkiSha256', 'subject', 'valid'])
  })

  it('SAN types the contract does not carry (registered IDs, UPNs) are skipped without harm', () => {
    const odd = makeClientCertWithSans(clientCa, 'odd', { sans: ['RID:1.2.3.4', 'DNS:odd.corp.example', 'otherName:1.2.3.4;UTF8:not-a-upn'] })
    const info = infoOf(odd, policyOf({ ca: clientCa.certPem, match_subject_alt_names: [{ user_principal_name: '.*' }] }))
    assert.deepEqual(info.sanDns, ['odd.corp.example'])
    assert.match(info.problem ?? '', /match_subject_alt_names/, 'an otherName that is not a UPN is not a UPN')
  })

  it('an intermediate-issued certificate names its issuing CA', () => {
    const info = infoOf(bobLeaf, policyOf({ ca: clientCa.certPem, max_verify_depth: 2 }), [issuingCa])
    assert.equal(info.valid, true, info.problem)
    assert.equal(info.issuer, 'CN=mTLS Issuing CA')
    assert.deepEqual(info.sanDns, ['bob.corp.example'])
  })

  it('subjects and issuers are RFC 2253 (most specific first, multi-valued RDNs joined with +), as Envoy prints them', () => {
    assert.equal(rfc2253('C=US\nO=A\\, Inc./x\nCN=x + UID=y'), 'UID=y+CN=x,O=A\\, Inc./x,C=US')
    assert.equal(rfc2253('CN=only'), 'CN=only')
    assert.equal(rfc2253(''), '')
  })

  it('IP SANs are printed as Go and Envoy print them (RFC 5952 for IPv6)', () => {
    const ip = (s: string): string => formatIp(Buffer.from(s.replace(/:/g, ''), 'hex'))
    assert.equal(formatIp(Buffer.from([10, 0, 0, 1])), '10.0.0.1')
    assert.equal(ip('0000:0000:0000:0000:0000:0000:0000:0001'), '::1')
    assert.equal(ip('0000:0000:0000:0000:0000:0000:0000:0000'), '::')
    assert.equal(ip('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1')
    assert.equal(ip('2001:0db8:0000:0001:0001:0001:0001:0001'), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed')
    assert.equal(ip('0001:0000:0000:0001:0000:0000:0000:0001'), '1:0:0:1::1', 'the longest zero run is compressed')
    assert.equal(ip('0001:0000:0000:0001:0000:0000:0001:0001'), '1::1:0:0:1:1', 'the first of equal runs is compressed')
    assert.equal(ip('0000:0000:0000:0000:0000:ffff:0102:0304'), '1.2.3.4', 'IPv4-mapped as IPv4, like Go')
    assert.equal(ip('fe80:0000:0000:0000:abcd:0000:0000:0000'), 'fe80::abcd:0:0:0')
  })

  it('no certificate, or OpenSSL refusing the chain, is reported as such', () => {
    assert.equal(infoOf(alice, policy, [], 'CERT_HAS_EXPIRED').problem, 'the client certificate has expired')
    assert.match(infoOf(stranger, policy, [], 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY').problem ?? '', /not issued by a downstream_mtls certificate authority/)
    assert.match(infoOf(alice, policy, [], 'SOMETHING_ELSE').problem ?? '', /failed verification \(SOMETHING_ELSE\)/)
    // Even were OpenSSL to accept it, a certificate that does not chain to the CAs is invalid.
    assert.match(infoOf(stranger, policy).problem ?? '', /does not chain/)
  })
})

void describe('client-cert.ts: match_subject_alt_names (anchored; one SAN must match one entry)', () => {
  const sansOf = (pair: CertKeyPair, matchers: Record<string, string>[]): boolean => infoOf(pair, policyOf({ ca: clientCa.certPem, match_subject_alt_names: matchers })).valid

  it('each SAN type matches its own entries, with a full-string match', () => {
    assert.equal(sansOf(alice, [{ dns: 'alice\\.corp\\.example' }]), true)
    assert.equal(sansOf(alice, [{ dns: '.*\\.corp\\.example' }]), true)
    assert.equal(sansOf(alice, [{ dns: 'alice' }]), false, 'anchored: a prefix is not a match')
    assert.equal(sansOf(alice, [{ dns: 'corp\\.example' }]), false, 'anchored: a suffix is not a match')
    assert.equal(sansOf(alice, [{ email: 'alice@corp\\.example' }]), true)
    assert.equal(sansOf(alice, [{ uri: 'spiffe://corp\\.example/.*' }]), true)
    assert.equal(sansOf(alice, [{ ip_address: '10\\.1\\.2\\.3' }]), true)
    assert.equal(sansOf(alice, [{ ip_address: '2001:db8::1' }]), true)
    assert.equal(sansOf(alice, [{ user_principal_name: 'alice@CORP\\.EXAMPLE' }]), true)
    assert.equal(sansOf(alice, [{ dns: 'alice@corp\\.example' }]), false, 'an email SAN does not satisfy a dns entry')
  })

  it('at least one entry must match; a certificate without SANs matches none', () => {
    assert.equal(sansOf(alice, [{ dns: 'nope' }, { email: 'nope' }, { uri: 'spiffe://corp\\.example/alice' }]), true)
    assert.equal(sansOf(alice, [{ dns: 'nope' }, { email: 'nope' }]), false)
    assert.equal(sansOf(noSans, [{ dns: '.*' }]), false)
    const info = infoOf(noSans, policyOf({ ca: clientCa.certPem, match_subject_alt_names: [{ dns: '.*' }] }))
    assert.match(info.problem ?? '', /match_subject_alt_names/)
    // With no entries, every certificate passes this check.
    assert.equal(matchesSubjectAltNames({ dns: [], email: [], uri: [], ip: [], upn: [] }, []), true)
  })
})

void describe('client-cert.ts: max_verify_depth', () => {
  it('default 1: the leaf must be issued by a configured CA; an intermediate needs depth 2; 0 = no limit', () => {
    const at = (depth?: number): ClientCertificateInfo =>
      infoOf(bobLeaf, policyOf({ ca: clientCa.certPem, ...(depth === undefined ? {} : { max_verify_depth: depth }) }), [issuingCa])
    assert.equal(at().valid, false)
    assert.match(at().problem ?? '', /longer than downstream_mtls\.max_verify_depth allows \(2 > 1\)/)
    assert.equal(at(1).valid, false)
    assert.equal(at(2).valid, true, at(2).problem)
    assert.equal(at(3).valid, true)
    assert.equal(at(0).valid, true)
    assert.equal(infoOf(alice, policyOf({ ca: clientCa.certPem })).valid, true, 'leaf issued by the CA: depth 1')
  })

  it('a configured intermediate CA is a trust anchor itself (depth 1), as in Pomerium', () => {
    assert.equal(infoOf(bobLeaf, policyOf({ ca: issuingCa.certPem })).valid, true)
    assert.equal(infoOf(bobLeaf, policyOf({ ca: clientCa.certPem + issuingCa.certPem })).valid, true, 'the shortest chain counts')
    assert.equal(infoOf(bobLeaf, policyOf({ ca: clientCa.certPem })).valid, false, 'without the intermediate there is no chain')
  })
})

void describe('client-cert.ts: CRLs (the leaf issuer\'s, as Pomerium checks them)', () => {
  it('parses CRLs: issuer and revoked serials', () => {
    const der = Buffer.from(crl.pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
    const parsed = parseCrl(der)
    const serial = BigInt(`0x${x509(mallory).serialNumber}`)
    assert.ok(parsed.revoked.has(serial))
    assert.equal(parsed.revoked.size, 1)
    assert.ok(parsed.nextUpdate && parsed.nextUpdate.getTime() > Date.now())
    assert.throws(() => parseCrl(Buffer.from('3003020101', 'hex')))
    assert.throws(() => parseCrl(der.subarray(0, der.length - 5)))
  })

  it('a revoked certificate is invalid; others of the same CA are not; CRLs of other CAs do not apply', () => {
    const policy = policyOf({ ca: clientCa.certPem + otherCa.certPem, crl: crl.pem + makeCrl(otherCa, [stranger]).pem })
    assert.equal(policy.crls.length, 2)
    assert.equal(infoOf(mallory, policy).valid, false)
    assert.equal(infoOf(mallory, policy).problem, 'the client certificate has been revoked')
    assert.equal(infoOf(alice, policy).valid, true, infoOf(alice, policy).problem)
    assert.equal(infoOf(stranger, policy).valid, false)
    // A CA without a CRL: its certificates are not refused for that (unlike OpenSSL's CRL_CHECK_ALL).
    const onlyOther = policyOf({ ca: clientCa.certPem + otherCa.certPem, crl: makeCrl(otherCa, []).pem })
    assert.equal(infoOf(alice, onlyOther).valid, true, infoOf(alice, onlyOther).problem)
  })

  it('the issuing intermediate\'s CRL applies to its leaves; the root\'s does not have to exist', () => {
    const policy = policyOf({ ca: clientCa.certPem, max_verify_depth: 2, crl: makeCrl(issuingCa, [bobLeaf]).pem })
    assert.equal(infoOf(bobLeaf, policy, [issuingCa]).problem, 'the client certificate has been revoked')
    const clean = policyOf({ ca: clientCa.certPem, max_verify_depth: 2, crl: makeCrl(issuingCa, []).pem })
    assert.equal(infoOf(bobLeaf, clean, [issuingCa]).valid, true)
  })

  it('a CRL that names the issuer but is not signed by it makes the certificate invalid', () => {
    // Same subject name as the client CA, another key.
    const impostor = makeIntermediateCa(otherCa, 'mTLS Client CA')
    const policy = policyOf({ ca: clientCa.certPem, crl: makeCrl(impostor, []).pem })
    assert.match(infoOf(alice, policy).problem ?? '', /invalid signature/)
  })
})

// ---------------------------------------------------------------------------------------------
// In process: what reaches the authorizer.

interface InProcess {
  readonly proxy: ProxyServer
  readonly port: number
  readonly seen: CheckRequest[]
  reload(settings: Record<string, unknown>): void
  close(): Promise<void>
}

const silent = createLogger('error', { write: () => undefined })

function configOf(dir: string, settings: Record<string, unknown>): Config {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(file, stringify(settings))
  const { config, issues } = loadConfig({ file, env: {} })
  assert.ok(config, issues.map((i) => `${i.path}: ${i.message}`).join('\n'))
  return config
}

async function startInProcess(settings: Record<string, unknown>): Promise<InProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-mtls-'))
  const seen: CheckRequest[] = []
  const proxy = new ProxyServer(configOf(dir, settings), {
    logger: silent,
    authorizer: {
      check(r) {
        seen.push(r)
        return { allow: true }
      },
    },
  })
  const [main] = await proxy.listen()
  assert.ok(main)
  return {
    proxy,
    port: main.port,
    seen,
    reload: (next) => proxy.applyConfig(configOf(dir, next)),
    async close() {
      await proxy.close(0)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function tlsSettings(upstream: Upstream, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    address: '127.0.0.1:0',
    certificate_file: pki.server.certFile,
    certificate_key_file: pki.server.keyFile,
    routes: [{ from: 'https://app.localhost', to: upstream.url, allow_public_unauthenticated_access: true }],
    ...extra,
  }
}

const MTLS = {
  ca: Buffer.from(clientCa.certPem).toString('base64'),
  crl: Buffer.from(crl.pem).toString('base64'),
  match_subject_alt_names: [{ dns: '.*\\.corp\\.example' }],
}

void describe('CheckRequest.clientCertificate (in-process proxy, recording authorizer)', () => {
  let echo: Upstream
  let px: InProcess
  const get = (clientCert?: CertKeyPair, extra: { http2?: boolean; path?: string } = {}): ReturnType<typeof request> =>
    request(`https://127.0.0.1:${px.port}${extra.path ?? '/who'}`, {
      host: 'app.localhost',
      ca: pki.ca.certPem,
      ...(clientCert ? { clientCert } : {}),
      ...(extra.http2 ? { http2: true } : {}),
    })
  const lastCert = (): ClientCertificateInfo | undefined => {
    const r = px.seen.at(-1)
    assert.ok(r, 'the authorizer saw no request')
    return r.clientCertificate
  }

  before(async () => {
    echo = await startHttpEcho()
    px = await startInProcess(tlsSettings(echo, { downstream_mtls: MTLS }))
  })
  after(async () => {
    await px.close()
    await echo.close()
  })

  it('a valid certificate over HTTP/1.1 and HTTP/2', async () => {
    for (const http2 of [false, true]) {
      const res = await get(alice, { http2 })
      assert.equal(res.status, 200)
      const info = lastCert()
      assert.ok(info)
      assert.equal(info.presented, true)
      assert.equal(info.valid, true, info.problem)
      assert.equal(info.subject, 'CN=alice')
      assert.equal(info.fingerprintSha256, x509(alice).fingerprint256.replace(/:/g, '').toLowerCase())
      assert.deepEqual(info.sanDns, ['alice.corp.example'])
    }
  })

  it('no certificate: presented false, no problem (the authorizer answers 495 under the default enforcement)', async () => {
    for (const http2 of [false, true]) {
      assert.equal((await get(undefined, { http2 })).status, 200, 'the recording authorizer allows everything')
      const info = lastCert()
      assert.ok(info, 'set whenever the listener asks for certificates')
      assert.equal(info.presented, false)
      assert.equal(info.valid, false)
      assert.equal(info.problem, undefined)
      assert.equal(info.fingerprintSha256, '')
    }
  })

  it('untrusted, revoked, SAN-less, wrong-purpose and too-deep certificates: presented, invalid, with the reason', async () => {
    const cases: [CertKeyPair, RegExp][] = [
      [pki.untrustedClient, /not issued by a downstream_mtls certificate authority/],
      [stranger, /not issued by a downstream_mtls certificate authority/],
      [mallory, /revoked/],
      [noSans, /match_subject_alt_names/],
      [serverOnly, /not valid for client authentication/],
      [bob, /max_verify_depth/],
    ]
    for (const [cert, problem] of cases) {
      assert.equal((await get(cert)).status, 200)
      const info = lastCert()
      assert.ok(info)
      assert.equal(info.presented, true)
      assert.equal(info.valid, false, `${x509(cert).subject} should be invalid`)
      assert.match(info.problem ?? '', problem)
      assert.equal(info.fingerprintSha256, x509(cert).fingerprint256.replace(/:/g, '').toLowerCase())
    }
  })

  it('/healthz and /ping answer without a certificate and never reach the authorizer', async () => {
    const before = px.seen.length
    for (const path of ['/healthz', '/ping']) {
      const res = await get(undefined, { path })
      assert.equal(res.status, 200)
      assert.equal(res.body, 'OK\n')
    }
    assert.equal(px.seen.length, before)
  })

  it('computed once per connection: requests on one keep-alive connection share the result', async () => {
    const from = px.seen.length
    const statuses = await tlsRequests(px.port, alice, ['/k0', '/k1', '/k2'])
    assert.deepEqual(statuses, [200, 200, 200])
    const infos = px.seen.slice(from).map((r) => r.clientCertificate)
    assert.equal(infos.length, 3)
    assert.ok(infos[0]?.valid)
    assert.ok(infos.every((i) => i === infos[0]), 'the same object for every request of the connection')
  })

  it('the PROXY-protocol path (bytes read ahead of TLS) verifies the same way, over HTTP/1.1 and HTTP/2', async () => {
    const pp = await startInProcess(tlsSettings(echo, { downstream_mtls: MTLS, use_proxy_protocol: true }))
    try {
      for (const alpn of ['http/1.1', 'h2']) {
        const status = await proxiedTlsGet(pp.port, alice, alpn)
        assert.equal(status, 200)
        const r = pp.seen.at(-1)
        assert.equal(r?.clientIp, '203.0.113.9')
        assert.equal(r?.clientCertificate?.valid, true, r?.clientCertificate?.problem)
        assert.equal(r?.clientCertificate?.subject, 'CN=alice')
      }
    } finally {
      await pp.close()
    }
  })

  it('reload: a changed CA applies to new connections; without downstream_mtls nothing is set', async () => {
    const rl = await startInProcess(tlsSettings(echo, { downstream_mtls: MTLS }))
    const kept = await keptConnection(rl.port, alice)
    const fresh = (cert: CertKeyPair): ReturnType<typeof request> => request(`https://127.0.0.1:${rl.port}/fresh`, { host: 'app.localhost', ca: pki.ca.certPem, clientCert: cert })
    try {
      assert.equal(await kept.head('/before'), 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate?.valid, true)
      assert.equal((await fresh(stranger)).status, 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate?.valid, false)

      rl.reload(tlsSettings(echo, { downstream_mtls: { ca: Buffer.from(otherCa.certPem).toString('base64') } }))
      assert.equal((await fresh(stranger)).status, 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate?.valid, true, 'new connections use the new CA')
      assert.equal((await fresh(alice)).status, 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate?.valid, false, 'the old CA is no longer trusted')
      assert.equal(await kept.head('/after'), 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate?.valid, true, 'a connection keeps the result of its handshake')

      rl.reload(tlsSettings(echo))
      assert.equal((await fresh(alice)).status, 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate, undefined, 'no downstream_mtls: no clientCertificate')

      rl.reload(tlsSettings(echo, { downstream_mtls: MTLS }))
      assert.equal(await kept.head('/again'), 200)
      assert.equal(rl.seen.at(-1)?.clientCertificate?.valid, true)
    } finally {
      kept.close()
      await rl.close()
    }
  })

  it('insecure_server: every request counts as presenting no certificate', async () => {
    const plain = await startInProcess({ ...tlsSettings(echo, { downstream_mtls: MTLS }), insecure_server: true, routes: [{ from: 'http://app.localhost', to: echo.url, allow_public_unauthenticated_access: true }] })
    try {
      const res = await request(`http://127.0.0.1:${plain.port}/x`, { host: 'app.localhost' })
      assert.equal(res.status, 200)
      assert.equal(plain.seen.at(-1)?.clientCertificate?.presented, false)
    } finally {
      await plain.close()
    }
  })
})

/** Sends GET requests for `paths` on one TLS connection (pipelined, the last one closing it); resolves with the statuses. */
function tlsRequests(port: number, cert: CertKeyPair, paths: readonly string[]): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'app.localhost', ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem, ALPNProtocols: ['http/1.1'] })
    let got = ''
    socket.once('error', reject)
    socket.once('secureConnect', () => {
      socket.write(paths.map((p, i) => `GET ${p} HTTP/1.1\r\nHost: app.localhost\r\n${i === paths.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join(''))
    })
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')))
    socket.on('end', () => resolve(statusCodes(got)))
  })
}

/** One TLS connection (HTTP/1.1 keep-alive) on which HEAD requests are sent one at a time. */
async function keptConnection(port: number, cert: CertKeyPair): Promise<{ head(path: string): Promise<number>; close(): void }> {
  const socket = tls.connect({ port, host: '127.0.0.1', servername: 'app.localhost', ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem, ALPNProtocols: ['http/1.1'] })
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve)
    socket.once('error', reject)
  })
  let buffered = ''
  let waiting: (() => void) | undefined
  socket.on('data', (d: Buffer) => {
    buffered += d.toString('latin1')
    waiting?.()
  })
  return {
    head(path) {
      buffered = ''
      socket.write(`HEAD ${path} HTTP/1.1\r\nHost: app.localhost\r\n\r\n`)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to HEAD ${path}`)), 5000)
        waiting = () => {
          if (!buffered.includes('\r\n\r\n')) return
          clearTimeout(timer)
          waiting = undefined
          resolve(statusCodes(buffered, { headRequests: true })[0] ?? 0)
        }
      })
    },
    close: () => socket.destroy(),
  }
}

/** GET /pp over TLS after a PROXY v1 header, with ALPN `alpn`; resolves with the status. */
function proxiedTlsGet(port: number, cert: CertKeyPair, alpn: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(port, '127.0.0.1', () => {
      raw.write('PROXY TCP4 203.0.113.9 10.0.0.1 40000 443\r\n')
      const socket = tls.connect({ socket: raw, servername: 'app.localhost', ca: pki.ca.certPem, cert: cert.certPem, key: cert.keyPem, ALPNProtocols: [alpn] })
      socket.once('error', reject)
      socket.once('secureConnect', () => {
        if (alpn === 'h2') {
          const session = http2.connect('https://app.localhost', { createConnection: () => socket })
          const req = session.request({ ':path': '/pp', ':authority': 'app.localhost' })
          req.on('response', (h) => {
            resolve(Number(h[':status']))
            session.close()
          })
          req.on('error', reject)
          req.resume()
          req.end()
          return
        }
        socket.write('GET /pp HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n')
        let got = ''
        socket.on('data', (d: Buffer) => (got += d.toString('latin1')))
        socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)))
      })
    })
    raw.once('error', reject)
  })
}

// ---------------------------------------------------------------------------------------------
// The real process.

void describe('portcullis process: downstream_mtls enforcement', { skip: isBuilt() ? false : 'run `npm run build` first' }, () => {
  let echo: Upstream
  let reject: PortcullisProcess
  let deep: PortcullisProcess
  let byPolicy: PortcullisProcess
  const get = (p: PortcullisProcess, clientCert?: CertKeyPair, extra: { http2?: boolean; path?: string } = {}): ReturnType<typeof request> =>
    request(`${p.url}${extra.path ?? '/who'}`, {
      host: 'app.localhost',
      ca: pki.ca.certPem,
      timeoutMs: 5000,
      ...(clientCert ? { clientCert } : {}),
      ...(extra.http2 ? { http2: true } : {}),
    })

  before(async () => {
    echo = await startHttpEcho()
    const base = tlsSettings(echo, { log_level: 'warn' })
    reject = await startPortcullis({
      ...base,
      downstream_mtls: { ...MTLS, enforcement: 'reject_connection', match_subject_alt_names: [{ dns: '.*\\.corp\\.example' }, { email: 'nobody@corp\\.example' }] },
    })
    deep = await startPortcullis({ ...base, downstream_mtls: { ca: MTLS.ca, enforcement: 'reject_connection', max_verify_depth: 2 } })
    byPolicy = await startPortcullis({ ...base, downstream_mtls: { ca: MTLS.ca } })
  })
  after(async () => {
    await Promise.all([reject?.stop(), deep?.stop(), byPolicy?.stop()])
    await echo?.close()
  })

  it('the access log field client-certificate names the certificate the request came with', async () => {
    const logged = await startPortcullis({ ...tlsSettings(echo, { log_level: 'info', access_log_fields: ['request-id', 'path', 'client-certificate'] }), downstream_mtls: { ...MTLS, enforcement: 'reject_connection' } })
    try {
      assert.equal((await get(logged, alice, { path: '/logged' })).status, 200)
      const line = await logged.waitForLog((e) => e['msg'] === 'http-request' && e['path'] === '/logged')
      const cert = line['client-certificate'] as Record<string, unknown>
      assert.equal(cert['subject'], 'CN=alice')
      assert.equal(cert['valid'], true)
      assert.equal(cert['fingerprint_sha256'], x509(alice).fingerprint256.replace(/:/g, '').toLowerCase())
    } finally {
      await logged.stop()
    }
  })

  it('reject_connection: a valid certificate is served over HTTP/1.1 and HTTP/2', async () => {
    for (const http2 of [false, true]) {
      const res = await get(reject, alice, { http2 })
      assert.equal(res.status, 200, res.body)
      assert.equal(echo.requests.at(-1)?.url, '/who')
    }
  })

  it('reject_connection: no certificate fails the handshake (TLS alert), /healthz included', async () => {
    for (const path of ['/who', '/healthz']) {
      assert.ok(await refused(get(reject, undefined, { path })))
      assert.ok(await refused(get(reject, undefined, { path, http2: true })))
    }
    // Straight from TLS: the server's alert says a certificate is required.
    const err = await tlsHandshakeError(reject.port)
    assert.match(err, /CERTIFICATE_REQUIRED|certificate required/i)
  })

  it('reject_connection: untrusted, revoked, SAN-mismatched, wrong-purpose and too-deep certificates get the connection closed before any HTTP', async () => {
    const before = echo.requests.length
    for (const cert of [pki.untrustedClient, stranger, mallory, noSans, serverOnly, bob]) {
      assert.ok(await refused(get(reject, cert)), `${x509(cert).subject} must be refused`)
      assert.ok(await refused(get(reject, cert, { http2: true })), `${x509(cert).subject} must be refused over HTTP/2`)
    }
    assert.equal(echo.requests.length, before, 'nothing reached the upstream')
    // The same connection works with a valid certificate right after.
    assert.equal((await get(reject, alice)).status, 200)
  })

  it('max_verify_depth: 2 accepts a certificate issued by an intermediate (sent with its chain); depth 1 does not', async () => {
    assert.equal((await get(deep, bob)).status, 200)
    assert.equal((await get(deep, alice)).status, 200)
    assert.ok(await refused(get(reject, bob)))
    assert.ok(await refused(get(deep, stranger)))
  })

  it('default enforcement: /healthz and /ping answer without a certificate (GET and HEAD)', async () => {
    for (const path of ['/healthz', '/ping']) {
      for (const http2 of [false, true]) {
        const res = await get(byPolicy, undefined, { path, http2 })
        assert.equal(res.status, 200)
        assert.equal(res.body, 'OK\n')
      }
      const head = await request(`${byPolicy.url}${path}`, { host: 'app.localhost', ca: pki.ca.certPem, method: 'HEAD' })
      assert.equal(head.status, 200)
    }
    // A certificate the CA does not vouch for does not stop the handshake either.
    assert.equal((await get(byPolicy, stranger, { path: '/healthz' })).status, 200)
  })
})

/**
 * Whether the server refused the connection: the request fails, or (the HTTP/2 client of the
 * fixtures resolves when the session ends) ends without any response.
 */
async function refused(response: Promise<{ status: number }>): Promise<boolean> {
  try {
    return (await response).status === 0
  } catch {
    return true
  }
}

/** Connects without a client certificate and returns the TLS error the client sees. */
function tlsHandshakeError(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'app.localhost', ca: pki.ca.certPem, ALPNProtocols: ['http/1.1'] })
    socket.once('secureConnect', () => socket.write('GET /who HTTP/1.1\r\nHost: app.localhost\r\n\r\n'))
    socket.on('data', () => undefined)
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(`${err.code ?? ''} ${err.message}`))
    socket.once('close', () => resolve('closed without an error'))
  })
}
