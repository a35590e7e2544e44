/**
 * End-to-end request hygiene (hostile-input cases: host and route confusion, path normalisation): the built
 * Portcullis binary in front of echo upstreams on loopback, driven with exact bytes.
 *
 * The layout used by most tests: host `pub.localhost` with a public route (prefix /public, echo
 * upstream `pub`) and a protected route (prefix /admin, echo upstream `admin`, not public → 403).
 * Every hostile request must end in 400, in the protected route's 403/404, or in a 200 from `pub`
 * where `pub` received exactly the normalised path the route was matched on. The `admin` upstream
 * is never reached, and `pub` never receives anything under /admin.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { makeServerCert, testPki } from '../fixtures/certs.js'
import { parseRawResponses, rawHttp, request, startPortcullis } from '../fixtures/portcullis.js'
import type { PortcullisProcess, RawResponse } from '../fixtures/portcullis.js'
import { startHttpEcho } from '../fixtures/upstreams.js'
import type { EchoRecord, Upstream } from '../fixtures/upstreams.js'

const PUB = 'pub.localhost'
/** How long a smuggled request that must not reach the upstream is given to (wrongly) arrive. */
const SMUGGLED_ARRIVAL_WINDOW_MS = 100

interface Stack {
  readonly px: PortcullisProcess
  readonly pub: Upstream
  readonly admin: Upstream
}

/** Starts the two upstreams and Portcullis with the public/protected layout and `extra` globals. */
async function startStack(extra: Record<string, unknown> = {}): Promise<Stack> {
  const pub = await startHttpEcho()
  const admin = await startHttpEcho()
  try {
    const px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      ...extra,
      routes: [
        { from: `https://${PUB}`, prefix: '/public', to: pub.url, allow_public_unauthenticated_access: true },
        { from: `https://${PUB}`, prefix: '/admin', to: admin.url },
      ],
    })
    return { px, pub, admin }
  } catch (err) {
    await pub.close()
    await admin.close()
    throw err
  }
}

async function stopStack(s: Stack | undefined): Promise<void> {
  if (s === undefined) return
  await s.px.stop()
  await s.pub.close()
  await s.admin.close()
}

/** Sends one request with an exact request line and header block; returns the parsed responses. */
async function raw(
  port: number,
  requestLine: string,
  headers: readonly string[] = [`Host: ${PUB}`],
  body = '',
): Promise<RawResponse[]> {
  const text = `${requestLine}\r\n${[...headers, 'Connection: close'].join('\r\n')}\r\n\r\n${body}`
  return parseRawResponses(await rawHttp(port, Buffer.from(text, 'latin1')))
}

async function status(port: number, target: string, headers?: readonly string[]): Promise<number> {
  const res = await raw(port, `GET ${target} HTTP/1.1`, headers)
  assert.equal(res.length, 1, `exactly one response for ${JSON.stringify(target)}`)
  return res[0]?.status ?? 0
}

/** The invariant of every hostile request: nothing under /admin ever reached an upstream. */
function assertAdminNeverReached(s: Stack): void {
  assert.deepEqual(
    s.admin.requests.map((r) => r.url),
    [],
    'the protected upstream must never be reached',
  )
  for (const r of s.pub.requests) {
    assert.ok(r.url.startsWith('/public'), `the public upstream received ${r.url}`)
  }
}

void describe('hostile requests against a public and a protected route (hostile-input cases: path normalisation)', () => {
  let s: Stack | undefined
  before(async () => {
    s = await startStack()
  })
  after(async () => {
    await stopStack(s)
  })

  void it('baseline: /public reaches the public upstream, /admin is 403, other paths 404', async () => {
    assert.ok(s)
    assert.equal(await status(s.px.port, '/public/x'), 200)
    assert.equal(s.pub.requests.at(-1)?.url, '/public/x')
    assert.equal(await status(s.px.port, '/admin'), 403)
    assert.equal(await status(s.px.port, '/admin/x'), 403)
    assert.equal(await status(s.px.port, '/other'), 404)
    assertAdminNeverReached(s)
  })

  // Item 20: each variant is denied (400/403/404); none is forwarded to the public upstream.
  const denied: ReadonlyArray<readonly [string, readonly number[]]> = [
    ['/public/../admin', [403]],
    ['/public/%2e%2e/admin', [403]],
    ['/public/%2E%2E/admin', [403]],
    ['/public/%2E%2E%2Fadmin', [400]],
    ['/public/..%2fadmin', [400]],
    ['/public%2F..%2Fadmin', [400]],
    ['/public/..%5cadmin', [400]],
    ['/public/..\\admin', [403, 400]],
    ['//admin', [403]],
    ['///admin/x', [403]],
    ['/./admin', [403]],
    ['/admin/.', [403]],
    ['/public/./../admin', [403]],
    ['/ADMIN', [404]],
    ['/admin;jsessionid=x', [403]],
    ['/admin%00', [400]],
    ['/public%00/../admin', [400]],
    ['/%61dmin', [403]],
    ['/%61%64%6d%69%6e/x', [403]],
  ]
  for (const [target, expected] of denied) {
    void it(`hostile: ${target} never reaches the upstream as /admin of the public route`, async () => {
      assert.ok(s)
      const before = s.pub.requests.length
      const code = await status(s.px.port, target)
      assert.ok(expected.includes(code), `${target}: got ${code}, expected one of ${expected.join('/')}`)
      assert.equal(s.pub.requests.length, before, `${target} must not be forwarded`)
      assertAdminNeverReached(s)
    })
  }

  // Item 20, allowed side: what the upstream receives is exactly the normalised path that matched.
  const normalised: ReadonlyArray<readonly [string, string]> = [
    ['/public/./x', '/public/x'],
    ['/public/a/../b', '/public/b'],
    ['/public/%78', '/public/x'],
    ['/public/%7e%2D', '/public/~-'],
    ['/public//x///y', '/public/x/y'],
    ['/public/a%20b', '/public/a%20b'],
    ['/public/%c3%a9', '/public/%C3%A9'],
    ['/public/x/.', '/public/x/'],
  ]
  for (const [target, expected] of normalised) {
    void it(`normalised: ${target} is matched and forwarded as ${expected}`, async () => {
      assert.ok(s)
      assert.equal(await status(s.px.port, target), 200, target)
      assert.equal(s.pub.requests.at(-1)?.url, expected)
      assertAdminNeverReached(s)
    })
  }

  void it('hostile: a raw # fragment in the request target is 400 (item 21)', async () => {
    assert.ok(s)
    const before = s.pub.requests.length
    for (const target of ['/public#/../admin', '/admin#/public', '/public/x#frag']) {
      assert.equal(await status(s.px.port, target), 400, target)
    }
    assert.equal(s.pub.requests.length, before)
    assertAdminNeverReached(s)
  })

  void it('hostile: the query string never influences path rules (item 22)', async () => {
    assert.ok(s)
    assert.equal(await status(s.px.port, '/admin?redirect=/public'), 403)
    assert.equal(await status(s.px.port, '/admin?/public'), 403)
    assert.equal(await status(s.px.port, '/admin?/../public'), 403)
    assertAdminNeverReached(s)
    // The other way round: the query is forwarded untouched and does not change the match.
    assert.equal(await status(s.px.port, '/public?next=/../admin&x=%2F'), 200)
    assert.equal(s.pub.requests.at(-1)?.url, '/public?next=/../admin&x=%2F')
    assert.equal(await status(s.px.port, '/public/a/../b?/admin'), 200)
    assert.equal(s.pub.requests.at(-1)?.url, '/public/b?/admin')
  })

  void it('hostile: malformed targets fail closed, never 200 (item 23)', async () => {
    assert.ok(s)
    const port = s.px.port
    const before = s.pub.requests.length
    const not200 = async (label: string, line: string, headers?: readonly string[]): Promise<void> => {
      const res = await raw(port, line, headers)
      for (const r of res) assert.notEqual(r.status, 200, label)
      assert.ok(res.length === 0 || (res[0]?.status ?? 0) >= 400, `${label}: ${res[0]?.statusLine}`)
    }
    assert.equal(await status(port, '/public/%zz'), 400)
    assert.equal(await status(port, '/%zz'), 400)
    assert.equal(await status(port, '/public/%4'), 400)
    await not200('invalid UTF-8', 'GET /public/\xff\xfe HTTP/1.1')
    await not200('overlong UTF-8 dot', 'GET /public/\xc0\xae\xc0\xae/admin HTTP/1.1')
    await not200('absolute-form', `GET http://${PUB}/public HTTP/1.1`)
    await not200('absolute-form to admin', `GET http://${PUB}/admin HTTP/1.1`)
    await not200('OPTIONS *', 'OPTIONS * HTTP/1.1')
    await not200('over-long request line', `GET /public/${'a'.repeat(200 * 1024)} HTTP/1.1`)
    await not200('control character', 'GET /public/a\x01b HTTP/1.1')
    await not200('HTTP/0.9-style request', 'GET /public/x')
    assert.equal(s.pub.requests.length, before, 'no malformed request may be forwarded')
    assertAdminNeverReached(s)
  })

  const smuggling: ReadonlyArray<readonly [string, string]> = [
    [
      'Content-Length with Transfer-Encoding: chunked',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
    [
      'Transfer-Encoding: xchunked',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
    [
      'Transfer-Encoding: chunked, identity',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
    [
      'two Content-Length headers',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
    [
      'obs-fold header continuation',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
    [
      'obs-fold on Transfer-Encoding',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
    [
      'space before the colon of Transfer-Encoding',
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: ${PUB}\r\n\r\n`,
    ],
  ]
  for (const [label, payload] of smuggling) {
    void it(`smuggling: ${label} is 400 and the second request never reaches the upstream (item 24)`, async () => {
      assert.ok(s)
      const before = s.pub.requests.length
      const res = parseRawResponses(await rawHttp(s.px.port, payload))
      assert.deepEqual(
        res.map((r) => r.status),
        [400],
        `${label}: ${res.map((r) => r.statusLine).join(' | ')}`,
      )
      // Proving that nothing arrives: a smuggled request the proxy let through would have by now.
      await new Promise((r) => setTimeout(r, SMUGGLED_ARRIVAL_WINDOW_MS))
      assert.deepEqual(s.pub.requests.slice(before).map((r) => r.url), [])
      assertAdminNeverReached(s)
    })
  }

  void it('a legitimate chunked POST and a pipelined second request both pass (control for item 24)', async () => {
    assert.ok(s)
    const before = s.pub.requests.length
    const text = await rawHttp(
      s.px.port,
      `POST /public/a HTTP/1.1\r\nHost: ${PUB}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /public/b HTTP/1.1\r\nHost: ${PUB}\r\nConnection: close\r\n\r\n`,
    )
    assert.deepEqual(
      parseRawResponses(text).map((r) => r.status),
      [200, 200],
    )
    const got = s.pub.requests.slice(before)
    assert.deepEqual(
      got.map((r) => [r.url, r.bodyLength]),
      [
        ['/public/a', 3],
        ['/public/b', 0],
      ],
    )
  })

  void it('hygiene: header names with "_" are 400 by default', async () => {
    assert.ok(s)
    const before = s.pub.requests.length
    assert.equal(await status(s.px.port, '/public/u', [`Host: ${PUB}`, 'X_Forwarded_User: admin']), 400)
    assert.equal(await status(s.px.port, '/public/u', [`Host: ${PUB}`, 'x_pomerium_jwt_assertion: forged']), 400)
    assert.equal(s.pub.requests.length, before)
  })

  void it('hygiene: duplicate Host or Authorization headers are 400', async () => {
    assert.ok(s)
    const before = s.pub.requests.length
    assert.equal(await status(s.px.port, '/public/d', [`Host: ${PUB}`, 'Host: other.localhost']), 400)
    assert.equal(await status(s.px.port, '/public/d', [`Host: ${PUB}`, `host: ${PUB}`]), 400)
    assert.equal(
      await status(s.px.port, '/public/d', [`Host: ${PUB}`, 'Authorization: Bearer a', 'Authorization: Bearer b']),
      400,
    )
    assert.equal(
      await status(s.px.port, '/public/d', [
        `Host: ${PUB}`,
        'X-Pomerium-Authorization: a',
        'X-Pomerium-Authorization: b',
      ]),
      400,
    )
    assert.equal(await status(s.px.port, '/public/d', []), 400, 'a missing Host is 400 too')
    assert.equal(s.pub.requests.length, before)
  })

  void it('hygiene: TRACE is 405 on every route and never reaches an upstream', async () => {
    assert.ok(s)
    const before = s.pub.requests.length
    for (const target of ['/public/x', '/admin', '/other']) {
      const res = await raw(s.px.port, `TRACE ${target} HTTP/1.1`, [`Host: ${PUB}`, 'Cookie: secret=1'])
      assert.equal(res[0]?.status, 405, target)
      // RFC 9110: a 405 says which methods are allowed.
      assert.equal(res[0]?.headers.find(([n]) => n.toLowerCase() === 'allow')?.[1], 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS')
      assert.doesNotMatch(res[0]?.body ?? '', /secret=1/)
    }
    assert.equal(s.pub.requests.length, before)
    assertAdminNeverReached(s)
    // The control: the same request with GET is forwarded.
    assert.equal(await status(s.px.port, '/public/x'), 200)
  })

  void it('hygiene: %2F and %5C in the path are 400 by default', async () => {
    assert.ok(s)
    const before = s.pub.requests.length
    assert.equal(await status(s.px.port, '/public/a%2Fb'), 400)
    assert.equal(await status(s.px.port, '/public/a%2fb'), 400)
    assert.equal(await status(s.px.port, '/public/a%5Cb'), 400)
    assert.equal(s.pub.requests.length, before)
  })
})

void describe('configurable hygiene actions', () => {
  const stacks: Stack[] = []
  after(async () => {
    for (const st of stacks) await stopStack(st)
  })
  const start = async (extra: Record<string, unknown>): Promise<Stack> => {
    const st = await startStack(extra)
    stacks.push(st)
    return st
  }

  void it('headers_with_underscores_action: drop forwards the request without the header', async () => {
    const st = await start({ headers_with_underscores_action: 'drop' })
    assert.equal(
      await status(st.px.port, '/public/u', [`Host: ${PUB}`, 'X_Custom_User: admin', 'X-Dash: kept']),
      200,
    )
    const rec = st.pub.requests.at(-1)
    assert.equal(rec?.url, '/public/u')
    assert.equal(rec?.headers['x-dash'], 'kept')
    assert.ok(!rec?.rawHeaders.some(([k]) => k.includes('_')), JSON.stringify(rec?.rawHeaders))
    assert.equal(rec?.headers['x-custom-user'], undefined)
  })

  void it('headers_with_underscores_action: allow forwards the header as written', async () => {
    const st = await start({ headers_with_underscores_action: 'allow' })
    assert.equal(await status(st.px.port, '/public/u', [`Host: ${PUB}`, 'X_Custom: yes']), 200)
    const rec = st.pub.requests.at(-1)
    assert.deepEqual(
      rec?.rawHeaders.find(([k]) => k.toLowerCase() === 'x_custom'),
      ['X_Custom', 'yes'],
    )
    // Proxy-owned names stay stripped even when spelled with underscores.
    assert.equal(await status(st.px.port, '/public/u', [`Host: ${PUB}`, 'X_Pomerium_Jwt_Assertion: forged']), 200)
    const rec2 = st.pub.requests.at(-1)
    assert.ok(!rec2?.rawHeaders.some(([k]) => /jwt.assertion/i.test(k)), JSON.stringify(rec2?.rawHeaders))
  })

  void it('path_with_escaped_slashes_action: keep forwards %2F untouched and matches on it', async () => {
    const st = await start({ path_with_escaped_slashes_action: 'keep' })
    assert.equal(await status(st.px.port, '/public/a%2fb'), 200)
    assert.equal(st.pub.requests.at(-1)?.url, '/public/a%2Fb')
    // Kept escapes are not path separators here, but an upstream that decodes them and then
    // resolves dot segments reads `..%2F` as `../`: that is an ambiguous path, refused by default.
    const before = st.pub.requests.length
    assert.equal(await status(st.px.port, '/public%2F..%2Fadmin'), 400)
    assert.equal(await status(st.px.port, '/public/..%2Fadmin'), 400)
    assert.equal(st.pub.requests.length, before)
    assert.equal(await status(st.px.port, '/admin%2Fx'), 403)
    assertAdminNeverReached(st)
  })

  void it('path_with_escaped_slashes_action: unescape-and-forward decodes before matching', async () => {
    const st = await start({ path_with_escaped_slashes_action: 'unescape-and-forward' })
    assert.equal(await status(st.px.port, '/public/a%2Fb%5Cc'), 200)
    assert.equal(st.pub.requests.at(-1)?.url, '/public/a/b/c')
    // Decoded slashes take part in dot-segment removal: this lands on /admin, which is protected.
    const before = st.pub.requests.length
    assert.equal(await status(st.px.port, '/public%2F..%2Fadmin'), 403)
    assert.equal(await status(st.px.port, '/public/..%2fadmin'), 403)
    assert.equal(st.pub.requests.length, before)
    assertAdminNeverReached(st)
  })

  void it('path_with_escaped_slashes_action: unescape-and-redirect answers 307 to the decoded path', async () => {
    const st = await start({ path_with_escaped_slashes_action: 'unescape-and-redirect' })
    const res = await raw(st.px.port, 'GET /public/a%2Fb?q=1 HTTP/1.1')
    assert.equal(res[0]?.status, 307)
    const location = res[0]?.headers.find(([k]) => k.toLowerCase() === 'location')?.[1]
    assert.equal(location, '/public/a/b?q=1')
    const hostile = await raw(st.px.port, 'GET /public%2F..%2Fadmin HTTP/1.1')
    assert.equal(hostile[0]?.status, 307)
    assert.equal(hostile[0]?.headers.find(([k]) => k.toLowerCase() === 'location')?.[1], '/admin')
    assert.equal(st.pub.requests.length, 0, 'a redirect is answered by the proxy')
    assertAdminNeverReached(st)
  })

  void it('merge_slashes: false keeps repeated slashes in matching and forwarding', async () => {
    const st = await start({ merge_slashes: false })
    assert.equal(await status(st.px.port, '/public//x'), 200)
    assert.equal(st.pub.requests.at(-1)?.url, '/public//x')
    // Without merging, //admin is neither /admin nor /public: no route, and never forwarded.
    assert.equal(await status(st.px.port, '//admin'), 404)
    assert.equal(await status(st.px.port, '/public/..//admin'), 404)
    assertAdminNeverReached(st)
  })
})

void describe('host and route confusion (hostile-input cases: host and route confusion)', () => {
  const ups: Record<string, Upstream> = {}
  let tlsPx: PortcullisProcess | undefined
  let px: PortcullisProcess | undefined
  const pki = testPki()
  // Node's client refuses `*.localhost` (a wildcard directly under a single label), so the
  // listener gets a certificate naming every host the tests use.
  const cert = makeServerCert(pki.ca, ['a.localhost', 'b.localhost', 'c.localhost', 'app.localhost', 'admin.localhost'])

  before(async () => {
    for (const name of ['a', 'b', 'c', 'app', 'wild', 'port', 'admin']) ups[name] = await startHttpEcho()
    const u = (n: string): string => (ups[n] as Upstream).url
    const routes = [
      // a and c are public, b is protected: their decisions differ, and so do their upstreams.
      { from: 'https://a.localhost', to: u('a'), allow_public_unauthenticated_access: true },
      { from: 'https://b.localhost', to: u('b') },
      { from: 'https://c.localhost', to: u('c'), allow_public_unauthenticated_access: true },
      // An exact protected host next to a public wildcard that would also match it.
      { from: 'https://app.localhost', to: u('app') },
      { from: 'https://admin.localhost', to: u('admin') },
      { from: 'https://port.localhost:8443', to: u('port'), allow_public_unauthenticated_access: true },
      { from: 'https://*.localhost', to: u('wild'), allow_public_unauthenticated_access: true },
    ]
    tlsPx = await startPortcullis({
      address: '127.0.0.1:0',
      certificate_file: cert.certFile,
      certificate_key_file: cert.keyFile,
      log_level: 'warn',
      routes,
    })
    px = await startPortcullis({ address: '127.0.0.1:0', insecure_server: true, log_level: 'warn', routes })
  })
  after(async () => {
    await tlsPx?.stop()
    await px?.stop()
    for (const up of Object.values(ups)) await up.close()
  })

  const echoOf = (r: { json<T>(): T }): EchoRecord => r.json<EchoRecord>()

  void it('TLS SNI a.localhost with Host b.localhost gets route B decision, never A upstream (item 17)', async () => {
    assert.ok(tlsPx)
    const ca = pki.ca.certPem
    // HTTP/1.1: SNI a (public), Host b (protected) → B's 403.
    const r1 = await request(`${tlsPx.url}/x`, { host: 'b.localhost', servername: 'a.localhost', ca })
    assert.equal(r1.status, 403)
    // HTTP/2: :authority b with SNI a → B's 403 as well.
    const r2 = await request(`${tlsPx.url}/x`, { host: 'b.localhost', servername: 'a.localhost', ca, http2: true })
    assert.equal(r2.httpVersion, '2')
    assert.equal(r2.status, 403)
    // SNI b (protected), Host c (public) → C's decision and C's upstream.
    const r3 = await request(`${tlsPx.url}/y`, { host: 'c.localhost', servername: 'b.localhost', ca })
    assert.equal(r3.status, 200)
    assert.equal(echoOf(r3).headers['x-forwarded-host'], 'c.localhost')
    const r4 = await request(`${tlsPx.url}/z`, { host: 'c.localhost', servername: 'a.localhost', ca, http2: true })
    assert.equal(r4.status, 200)
    assert.deepEqual(
      ups['c']?.requests.map((r) => r.url),
      ['/y', '/z'],
    )
    assert.equal(ups['a']?.requests.length, 0, 'route A upstream must never be used')
    assert.equal(ups['b']?.requests.length, 0, 'route B is protected')
  })

  void it('host variants of a protected host keep its decision, never the public wildcard (item 18)', async () => {
    assert.ok(px && tlsPx)
    for (const host of ['app.localhost', 'APP.LOCALHOST', 'App.LocalHost', 'app.localhost.', 'app.localhost:443', 'app.localhost:8443', 'APP.localhost.:80']) {
      const r = await raw(px.port, 'GET /x HTTP/1.1', [`Host: ${host}`])
      assert.ok([403, 404, 400].includes(r[0]?.status ?? 0), `${host}: ${r[0]?.statusLine}`)
      assert.notEqual(r[0]?.status, 200, host)
    }
    // The same over TLS with the SNI matching.
    const t = await request(`${tlsPx.url}/x`, { host: 'APP.LOCALHOST', servername: 'app.localhost', ca: pki.ca.certPem })
    assert.equal(t.status, 403)
    assert.equal(ups['wild']?.requests.length, 0, 'no variant may fall through to the wildcard')
    assert.equal(ups['app']?.requests.length, 0)
  })

  void it('host variants of a public host reach the same route and upstream (item 18)', async () => {
    assert.ok(px)
    ups['c']?.requests.splice(0)
    for (const host of ['C.LOCALHOST', 'c.localhost.', 'c.localhost:443', 'c.localhost:1234']) {
      const r = await raw(px.port, 'GET /v HTTP/1.1', [`Host: ${host}`])
      assert.equal(r[0]?.status, 200, host)
    }
    assert.equal(ups['c']?.requests.length, 4)
    assert.equal(ups['wild']?.requests.length, 0)
  })

  void it('a from URL with a port matches only that port; other ports are 404, not the wildcard (item 18)', async () => {
    assert.ok(px)
    assert.equal((await raw(px.port, 'GET / HTTP/1.1', ['Host: port.localhost:8443']))[0]?.status, 200)
    assert.equal(ups['port']?.requests.length, 1)
    for (const host of ['port.localhost', 'port.localhost:9000', 'PORT.localhost.:443']) {
      assert.equal((await raw(px.port, 'GET / HTTP/1.1', [`Host: ${host}`]))[0]?.status, 404, host)
    }
    assert.equal(ups['wild']?.requests.length, 0)
  })

  void it('exact admin.localhost beats wildcard *.localhost; other names use the wildcard (item 19)', async () => {
    assert.ok(px && tlsPx)
    assert.equal(await status(px.port, '/secret', ['Host: admin.localhost']), 403)
    const h2 = await request(`${tlsPx.url}/secret`, { host: 'admin.localhost', ca: pki.ca.certPem, http2: true })
    assert.equal(h2.status, 403)
    assert.equal(ups['admin']?.requests.length, 0)
    assert.equal(ups['wild']?.requests.length, 0)
    assert.equal(await status(px.port, '/w', ['Host: other.localhost']), 200)
    assert.equal(await status(px.port, '/w', ['Host: x.admin.localhost']), 200)
    assert.equal(ups['wild']?.requests.length, 2)
    assert.equal(ups['admin']?.requests.length, 0)
    // The wildcard needs at least one label: the bare parent domain is not covered.
    assert.equal(await status(px.port, '/w', ['Host: localhost']), 404)
  })

  void it('malformed Host values are 400, never routed', async () => {
    assert.ok(px)
    for (const host of ['a.localhost:abc', 'a.localhost:99999', 'a.localhost@b.localhost', 'a..localhost/x', 'a.localhost b']) {
      const code = await status(px.port, '/x', [`Host: ${host}`])
      assert.equal(code, 400, host)
    }
    assert.equal(ups['a']?.requests.length, 0)
  })
})

/**
 * Paths that Portcullis matches and authorises as one path but a lenient upstream serves as
 * another: Tomcat and Spring strip `;` parameters (`/public/..;/admin` is `/admin` to them), some
 * servers decode twice (`%252e%252e` is `..`) or accept overlong UTF-8 (`%c0%ae` is `.`).
 * Each is 400 by default, before authorisation, whatever kind of route it matched.
 */
void describe('paths a lenient upstream would resolve differently', () => {
  const JAVA = 'java.localhost'
  const LEGACY = 'legacy.localhost'
  const SERVLET = 'servlet.localhost'
  const DENIES = 'denies.localhost'
  let s: Stack | undefined
  let legacy: Upstream | undefined
  before(async () => {
    const pub = await startHttpEcho()
    const admin = await startHttpEcho()
    legacy = await startHttpEcho()
    const px = await startPortcullis({
      address: '127.0.0.1:0',
      insecure_server: true,
      log_level: 'warn',
      routes: [
        // prefix routes: a public prefix next to a protected one.
        { from: `https://${PUB}`, prefix: '/public', to: pub.url, allow_public_unauthenticated_access: true },
        { from: `https://${PUB}`, prefix: '/admin', to: admin.url },
        // path and regex routes protect /admin and /manage/*; everything else is public, except
        // /secret, which the policy denies by http_path.
        { from: `https://${JAVA}`, path: '/admin', to: admin.url },
        { from: `https://${JAVA}`, regex: '^/manage/.*$', to: admin.url },
        {
          from: `https://${JAVA}`,
          prefix: '/',
          to: pub.url,
          policy: [{ allow: { or: [{ accept: true }] } }, { deny: { or: [{ http_path: { starts_with: '/secret' } }] } }],
        },
        // A protected "/admin/" prefix in front of a public catch-all, as a Tomcat app would be set up.
        { from: `https://${SERVLET}`, prefix: '/admin/', to: admin.url },
        { from: `https://${SERVLET}`, prefix: '/', to: pub.url, allow_public_unauthenticated_access: true },
        // One public route whose policy denies /admin and /admin/* by http_path.
        {
          from: `https://${DENIES}`,
          prefix: '/',
          to: pub.url,
          policy: [{ allow: { or: [{ accept: true }] } }, { deny: { or: [{ http_path: { is: '/admin' } }, { http_path: { starts_with: '/admin/' } }] } }],
        },
        // An upstream that needs literal ";" and "%25": the route allows what would be refused.
        { from: `https://${LEGACY}`, prefix: '/', to: legacy.url, allow_public_unauthenticated_access: true, allow_ambiguous_paths: true },
      ],
    })
    s = { px, pub, admin }
  })
  after(async () => {
    await stopStack(s)
    await legacy?.close()
  })

  /** Sends each target to `host`; every one must be 400 and nothing may reach an upstream. */
  async function refused(host: string, targets: readonly string[]): Promise<void> {
    assert.ok(s)
    const before = s.pub.requests.length
    for (const target of targets) {
      const res = await raw(s.px.port, `GET ${target} HTTP/1.1`, [`Host: ${host}`])
      assert.equal(res[0]?.status, 400, `${host}${target}: ${res[0]?.statusLine}`)
      assert.match(res[0]?.body ?? '', /Bad request: the path contains/, target)
    }
    assert.deepEqual(s.pub.requests.slice(before).map((r) => r.url), [], 'nothing reaches the public upstream')
    assert.deepEqual(s.admin.requests.map((r) => r.url), [], 'nothing reaches the protected upstream')
  }

  void it('control: ordinary ";", "%25" and UTF-8 still pass, and the protected routes are protected', async () => {
    assert.ok(s)
    for (const target of ['/public/a;jsessionid=x', '/public/;jsessionid=x', '/public/100%25', '/public/report%252ecsv', '/public/caf%C3%A9']) {
      assert.equal(await status(s.px.port, target), 200, target)
      assert.equal(s.pub.requests.at(-1)?.url, target)
    }
    assert.equal(await status(s.px.port, '/admin', [`Host: ${JAVA}`]), 403)
    assert.equal(await status(s.px.port, '/manage/x', [`Host: ${JAVA}`]), 403)
    assert.equal(await status(s.px.port, '/secret', [`Host: ${JAVA}`]), 403)
    assert.equal(await status(s.px.port, '/static/x', [`Host: ${JAVA}`]), 200)
    assert.deepEqual(s.admin.requests, [])
  })

  void it('prefix route: ";" dot segments, double encoding and overlong UTF-8 under /public are 400', async () => {
    await refused(PUB, [
      '/public/..;/admin',
      '/public/..;jsessionid=x/admin',
      '/public/%2e%2e;/admin',
      '/public/%252e%252e/admin',
      '/public/%252E%252E/admin',
      '/public/..%252fadmin',
      '/public/%255c..%255cadmin',
      '/public/%c0%ae%c0%ae/admin',
      '/public/%e0%80%ae%e0%80%ae/admin',
      '/public/%25c0%25ae%25c0%25ae/admin',
    ])
    // An upgrade request takes the same path through the checks.
    assert.ok(s)
    const upgrade = parseRawResponses(
      await rawHttp(s.px.port, `GET /public/..;/admin HTTP/1.1\r\nHost: ${PUB}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`),
    )
    assert.equal(upgrade[0]?.status, 400, upgrade[0]?.statusLine)
  })

  void it('path route: /admin reached through the public catch-all by ";" or double encoding is 400', async () => {
    await refused(JAVA, ['/.;/admin', '/;x/admin', '/static/..;/admin', '/%252e/admin', '/static/%252e%252e/admin'])
  })

  void it('regex route: /manage/* reached through the public catch-all is 400', async () => {
    await refused(JAVA, ['/static/..;/manage/x', '/.;/manage/x', '/static/%252e%252e/manage/x', '/static/%c0%ae%c0%ae/manage/x'])
  })

  void it('http_path deny: /secret reached by ";" or double encoding is 400, not forwarded past the policy', async () => {
    await refused(JAVA, ['/.;/secret', '/static/..;/secret', '/static/%252e%252e/secret', '/%252e/secret'])
  })

  void it('";" parameters that move a path off a protected prefix route are 400', async () => {
    assert.ok(s)
    assert.equal(await status(s.px.port, '/admin/secret', [`Host: ${SERVLET}`]), 403, 'control: the prefix is protected')
    await refused(SERVLET, ['/admin;x/secret', '/admin;jsessionid=abc/secret', '/admin%3Bx/secret'])
  })

  void it('";" parameters that would escape an http_path deny are 400', async () => {
    assert.ok(s)
    assert.equal(await status(s.px.port, '/admin', [`Host: ${DENIES}`]), 403, 'control: the rule denies /admin')
    assert.equal(await status(s.px.port, '/admin/y', [`Host: ${DENIES}`]), 403, 'control: the rule denies /admin/*')
    await refused(DENIES, ['/admin;x', '/admin;x/y', '/admin;jsessionid=abc'])
  })

  void it('";jsessionid" and matrix parameters pass where stripping them changes neither route nor rule', async () => {
    assert.ok(s)
    for (const [host, target] of [
      [SERVLET, '/app;jsessionid=ABC123'],
      [SERVLET, '/shop/items;color=red/list;jsessionid=ABC123'],
      [DENIES, '/page;jsessionid=ABC123'],
      [DENIES, '/public;v=1/admin'],
    ] as const) {
      assert.equal(await status(s.px.port, target, [`Host: ${host}`]), 200, `${host}${target}`)
      assert.equal(s.pub.requests.at(-1)?.url, target, 'forwarded unchanged')
    }
    // Inside the protected prefix the parameters change nothing either: the route still decides.
    assert.equal(await status(s.px.port, '/admin/page;jsessionid=ABC123', [`Host: ${SERVLET}`]), 403)
    assert.deepEqual(s.admin.requests, [])
  })

  void it('allow_ambiguous_paths: true forwards such paths unchanged on that route only', async () => {
    assert.ok(s && legacy)
    for (const target of ['/a/..;/b', '/.;/b', '/x/%252e%252e/y', '/x/%c0%ae']) {
      const res = await raw(s.px.port, `GET ${target} HTTP/1.1`, [`Host: ${LEGACY}`])
      assert.equal(res[0]?.status, 200, target)
      assert.equal(legacy.requests.at(-1)?.url, target.replace('%c0%ae', '%C0%AE'))
    }
    // The same targets on a route without the setting stay refused.
    await refused(JAVA, ['/a/..;/b', '/x/%252e%252e/y'])
  })
})
