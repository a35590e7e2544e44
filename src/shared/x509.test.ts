import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { makeCa, makeClientCertWithSans, makeCrl } from '../../test/fixtures/certs.js'
import { certificateFields, crlSignedBy, formatIp, parseCrl, pemBlocks, rfc2253 } from './x509.js'

const openssl = (args: readonly string[]): string => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString()
const derOf = (pem: string): Buffer => {
  const block = pemBlocks(pem)[0]
  assert.ok(block, 'a PEM block')
  return block.der
}

const ca = makeCa('x509 helper CA')
const otherCa = makeCa('x509 helper other CA')
const alice = makeClientCertWithSans(ca, 'alice', {
  sans: [
    'DNS:alice.corp.example',
    'email:alice@corp.example',
    'URI:spiffe://corp.example/alice',
    'IP:10.1.2.3',
    'IP:2001:db8:0:0:1:0:0:1',
    'IP:::ffff:1.2.3.4',
    'otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@CORP.EXAMPLE',
    'otherName:1.2.3.4;UTF8:not-a-upn',
    'RID:1.2.3.4',
  ],
})
const bob = makeClientCertWithSans(ca, 'bob')

/** A CA of another key type and a CRL it signs, made with `openssl ca -gencrl`. */
const work = mkdtempSync(join(tmpdir(), 'portcullis-x509-test-'))
after(() => rmSync(work, { recursive: true, force: true }))
function crlOfKeyType(kind: 'rsa' | 'rsa-pss' | 'ed25519' | 'ed448'): { caPem: string; crlDer: Buffer } {
  const base = join(work, kind)
  writeFileSync(`${base}.cnf`, ['[ca]', 'default_ca = c', '[c]', `database = ${base}.index`, `crlnumber = ${base}.num`, 'default_crl_days = 30', ''].join('\n'))
  writeFileSync(`${base}.index`, '')
  writeFileSync(`${base}.num`, '1000\n')
  const newKey = kind === 'ed25519' || kind === 'ed448' ? ['-newkey', kind] : ['-newkey', 'rsa:2048']
  openssl(['req', '-x509', '-new', ...newKey, '-nodes', '-keyout', `${base}.key`, '-out', `${base}.crt`, '-subj', `/CN=${kind} CA`, '-days', '10'])
  const md = kind === 'ed25519' || kind === 'ed448' ? ['-md', 'default'] : ['-md', 'sha256']
  const pss = kind === 'rsa-pss' ? ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32'] : []
  openssl(['ca', '-config', `${base}.cnf`, '-keyfile', `${base}.key`, '-cert', `${base}.crt`, '-gencrl', ...md, ...pss, '-out', `${base}.crl`])
  return { caPem: readFileSync(`${base}.crt`, 'utf8'), crlDer: derOf(readFileSync(`${base}.crl`, 'utf8')) }
}

void describe('x509: certificate fields', () => {
  it('serial as openssl prints it, subject DER equal to the CRL issuer DER', () => {
    const fields = certificateFields(new X509Certificate(alice.certPem))
    const serial = openssl(['x509', '-noout', '-serial', '-in', alice.certFile]).trim().replace(/^serial=/, '')
    assert.equal(fields.serial, BigInt(`0x${serial}`))
    const caFields = certificateFields(new X509Certificate(ca.certPem))
    assert.ok(caFields.subject.equals(parseCrl(derOf(makeCrl(ca).pem)).issuer))
    assert.ok(!caFields.subject.equals(certificateFields(new X509Certificate(otherCa.certPem)).subject))
  })

  it('SANs by type; IPs as Go prints them (v4-mapped as IPv4); only UPN otherNames; RIDs skipped', () => {
    const { sans } = certificateFields(new X509Certificate(alice.certPem))
    assert.deepEqual(sans.dns, ['alice.corp.example'])
    assert.deepEqual(sans.email, ['alice@corp.example'])
    assert.deepEqual(sans.uri, ['spiffe://corp.example/alice'])
    assert.deepEqual(sans.ip, ['10.1.2.3', '2001:db8::1:0:0:1', '1.2.3.4'])
    assert.deepEqual(sans.upn, ['alice@CORP.EXAMPLE'])
    assert.deepEqual(certificateFields(new X509Certificate(bob.certPem)).sans, { dns: [], email: [], uri: [], ip: [], upn: [] })
  })

  it('formatIp and rfc2253', () => {
    assert.equal(formatIp(Buffer.from([192, 0, 2, 1])), '192.0.2.1')
    assert.equal(formatIp(Buffer.from('20010db8000000000000000000000001', 'hex')), '2001:db8::1')
    assert.equal(rfc2253('C=US\nO=Org\nCN=x'), 'CN=x,O=Org,C=US')
  })
})

void describe('x509: CRLs', () => {
  it('issuer, thisUpdate/nextUpdate and revoked serials', () => {
    const crl = parseCrl(derOf(makeCrl(ca, [alice], { days: 7 }).pem))
    const text = openssl(['crl', '-noout', '-lastupdate', '-nextupdate', '-in', makeCrl(ca, [alice], { days: 7 }).file])
    const last = /lastUpdate=(.*)/.exec(text)?.[1] ?? ''
    const next = /nextUpdate=(.*)/.exec(text)?.[1] ?? ''
    assert.ok(Math.abs(crl.thisUpdate.getTime() - Date.parse(last)) <= 60_000)
    assert.ok(Math.abs((crl.nextUpdate?.getTime() ?? 0) - Date.parse(next)) <= 60_000)
    assert.deepEqual([...crl.revoked], [certificateFields(new X509Certificate(alice.certPem)).serial])
    assert.equal(parseCrl(derOf(makeCrl(ca).pem)).revoked.size, 0)
  })

  it('malformed or truncated input, or bytes after the CRL, throw', () => {
    const der = derOf(makeCrl(ca, [alice]).pem)
    assert.throws(() => parseCrl(Buffer.from('3003020101', 'hex')))
    assert.throws(() => parseCrl(der.subarray(0, der.length - 5)))
    assert.throws(() => parseCrl(Buffer.concat([der, Buffer.from([0, 0])])), /trailing bytes/)
    assert.throws(() => parseCrl(Buffer.alloc(0)))
  })

  it('the signature is checked against the issuing CA: ECDSA, RSA, RSA-PSS, Ed25519 and Ed448', () => {
    const ec = parseCrl(derOf(makeCrl(ca, [alice]).pem))
    assert.equal(crlSignedBy(ec, new X509Certificate(ca.certPem).publicKey), true)
    assert.equal(crlSignedBy(ec, new X509Certificate(otherCa.certPem).publicKey), false, 'another CA did not sign it')
    for (const kind of ['rsa', 'rsa-pss', 'ed25519', 'ed448'] as const) {
      const { caPem, crlDer } = crlOfKeyType(kind)
      const crl = parseCrl(crlDer)
      assert.equal(crl.signatureSupported, true, kind)
      assert.equal(crlSignedBy(crl, new X509Certificate(caPem).publicKey), true, kind)
      assert.equal(crlSignedBy(crl, new X509Certificate(ca.certPem).publicKey), false, kind)
    }
  })

  it('a CRL whose signed part or signature was altered does not verify', () => {
    const der = Buffer.from(derOf(makeCrl(ca, [alice]).pem))
    const key = new X509Certificate(ca.certPem).publicKey
    const crl = parseCrl(der)
    // Flip a byte of the last revoked serial inside the signed part.
    const serialHex = certificateFields(new X509Certificate(alice.certPem)).serial.toString(16)
    const at = der.indexOf(Buffer.from(serialHex.padStart(serialHex.length + (serialHex.length % 2), '0'), 'hex'))
    assert.ok(at > 0)
    const tampered = Buffer.from(der)
    tampered[at] = (tampered[at] as number) ^ 0x01
    assert.equal(crlSignedBy(parseCrl(tampered), key), false)
    assert.equal(crlSignedBy({ ...crl, signature: Buffer.alloc(crl.signature.length) }, key), false)
  })
})
