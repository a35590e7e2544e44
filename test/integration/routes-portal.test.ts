/**
 * The routes portal end to end (Pomerium docs: On every route host `/.pomerium/routes`, `/.pomerium/api/v1/routes`):
 * the real process, sessions from the real OpenID provider, and route policies deciding which
 * routes each user sees; sign-in for browsers and 401 for scripts without a session.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import type { CookieJar } from '../fixtures/oidc-provider.js'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'

let setup: SignInSetup
let alice: CookieJar
let bob: CookieJar

interface PortalJson {
  routes: { id: string; name: string; type: string; from: string; description: string; logo_url: string; connect_command?: string }[]
}

before(async () => {
  setup = await startSignInSetup({
    routes: (upstream) => [
      {
        from: 'https://admin.localhost',
        to: upstream,
        name: 'Admin console',
        description: 'Run <b>jobs</b> & "reports"',
        logo_url: 'https://cdn.example.net/admin.svg',
        policy: { allow: { and: [{ 'claim/groups': 'admins' }] } },
      },
      { from: 'https://users.localhost', to: upstream, name: 'Bob only', logo_url: '/bob.png', allowed_users: ['bob@example.com'] },
      { from: 'https://gcp.localhost', to: upstream, name: 'Locked' },
      { from: 'tcp+https://api.localhost:5432', to: 'tcp://127.0.0.1:5432', name: 'Postgres', allow_any_authenticated_user: true },
      { from: 'https://*.wild.localhost', to: upstream, allow_any_authenticated_user: true },
    ],
  })
  alice = (await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')).jar
  bob = (await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')).jar
})
after(async () => {
  await setup.close()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

async function http(url: string, jar?: CookieJar, opts: { method?: string; accept?: string } = {}): Promise<Answer> {
  const u = new URL(url)
  const cookie = jar?.header(u)
  const res = await request(u, {
    dispatcher: setup.dispatcher,
    method: (opts.method ?? 'GET') as 'GET',
    headers: { accept: opts.accept ?? 'text/html', ...(cookie ? { cookie } : {}) },
  })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

async function portal(jar: CookieJar): Promise<PortalJson> {
  const res = await http(`${setup.app}/.pomerium/api/v1/routes`, jar, { accept: 'application/json' })
  assert.equal(res.status, 200, res.body)
  assert.match(String(res.headers['content-type']), /^application\/json/)
  return JSON.parse(res.body) as PortalJson
}

describe('routes portal', () => {
  test('the JSON lists the routes each user may open, as their policies say', async () => {
    const a = await portal(alice)
    const b = await portal(bob)
    assert.deepEqual(
      a.routes.map((r) => r.from),
      ['https://app.localhost', 'https://other.localhost', 'https://public.localhost', 'https://admin.localhost', 'tcp+https://api.localhost:5432', 'https://*.wild.localhost'],
    )
    assert.deepEqual(
      b.routes.map((r) => r.from),
      ['https://app.localhost', 'https://other.localhost', 'https://public.localhost', 'https://users.localhost', 'tcp+https://api.localhost:5432', 'https://*.wild.localhost'],
    )
    const admin = a.routes.find((r) => r.from === 'https://admin.localhost')
    assert.deepEqual(
      { ...admin, id: undefined },
      { id: undefined, name: 'Admin console', type: 'http', from: 'https://admin.localhost', description: 'Run <b>jobs</b> & "reports"', logo_url: 'https://cdn.example.net/admin.svg' },
    )
    assert.match(admin?.id ?? '', /\S/)
    assert.equal(a.routes[0]?.name, 'app', 'routes without a name get one')
    const pg = a.routes.find((r) => r.name === 'Postgres')
    assert.equal(pg?.type, 'tcp')
    assert.equal(pg?.connect_command, 'portcullis tcp api.localhost:5432')
    // The same route has the same id and name for both users.
    assert.deepEqual(a.routes[0], b.routes[0])
  })

  test('without a session the JSON answers 401 and a browser is sent to sign in, then comes back to the portal', async () => {
    const json = await http(`${setup.app}/.pomerium/api/v1/routes`, undefined, { accept: 'application/json' })
    assert.equal(json.status, 401)
    const body = JSON.parse(json.body) as { error: string; request_id: string }
    assert.ok(body.error && body.request_id)
    const browserJson = await http(`${setup.app}/.pomerium/api/v1/routes`)
    assert.equal(browserJson.status, 401, 'the JSON endpoint never redirects')

    const page = await http(`${setup.app}/.pomerium/routes`)
    assert.equal(page.status, 302)
    const location = new URL(String(page.headers['location']))
    assert.equal(location.origin, setup.authn)
    assert.equal(location.pathname, '/.pomerium/sign_in')
    assert.equal(location.searchParams.get('pomerium_redirect_uri'), `${setup.app}/.pomerium/routes`)
    const script = await http(`${setup.app}/.pomerium/routes`, undefined, { accept: 'application/json' })
    assert.equal(script.status, 401, 'scripts get 401, not a redirect')

    const { jar, final } = await signIn(setup, `${setup.app}/.pomerium/routes`, 'bob@example.com', 'bob-password')
    assert.equal(final.href, `${setup.app}/.pomerium/routes`)
    const after = await http(`${setup.app}/.pomerium/routes`, jar)
    assert.equal(after.status, 200)
    assert.ok(after.body.includes('Bob only'))
  })

  test('the HTML lists cards with names, logos and links, escaped, under the strict page headers', async () => {
    const res = await http(`${setup.app}/.pomerium/routes`, alice)
    assert.equal(res.status, 200, res.body)
    assert.match(String(res.headers['content-type']), /^text\/html/)
    assert.ok(res.body.includes('Admin console'))
    assert.ok(res.body.includes('<img src="https://cdn.example.net/admin.svg"'))
    assert.ok(res.body.includes('Run &#60;b&#62;jobs&#60;/b&#62; &#38; &#34;reports&#34;'), 'descriptions are escaped')
    assert.ok(!res.body.includes('<b>jobs'))
    assert.ok(res.body.includes(`<a href="${setup.app}/">`), 'links keep the port the portal was reached on')
    assert.ok(res.body.includes('<code>portcullis tcp api.localhost:5432</code>'))
    assert.ok(res.body.includes('https://*.wild.localhost') && !res.body.includes('href="https://*'))
    assert.ok(!res.body.includes('Bob only') && !res.body.includes('Locked'))
    const csp = String(res.headers['content-security-policy'])
    assert.match(csp, /default-src 'none'/)
    assert.match(csp, /img-src 'self' data: https:\/\/cdn\.example\.net;/)
    assert.ok(!csp.includes('script-src') && !csp.includes('unsafe-inline'), csp)
    assert.match(csp, /frame-ancestors 'none'/)
    // The global response headers (Pomerium's defaults) apply to Portcullis' pages too.
    assert.ok(res.headers['x-frame-options'], 'x-frame-options is set')
    assert.match(String(res.headers['strict-transport-security']), /max-age=\d+/)
    assert.equal(res.headers['cache-control'], 'no-store')
    assert.equal(res.headers['referrer-policy'], 'no-referrer')

    const bobs = await http(`${setup.app}/.pomerium/routes`, bob)
    assert.equal(bobs.status, 200)
    assert.ok(bobs.body.includes('Bob only') && bobs.body.includes('<img src="/bob.png"'))
    assert.ok(!bobs.body.includes('Admin console'))
  })

  test('the user page links to the portal; other methods are refused', async () => {
    const user = await http(`${setup.app}/.pomerium/`, alice)
    assert.equal(user.status, 200)
    assert.ok(user.body.includes('href="/.pomerium/routes"'))
    const post = await http(`${setup.app}/.pomerium/api/v1/routes`, alice, { method: 'POST', accept: 'application/json' })
    assert.equal(post.status, 405)
  })

  test('with runtime flag routes_portal off the portal is not served', async () => {
    const off = await setup.startAnother({ runtime_flags: { routes_portal: false } })
    const base = `https://app.localhost:${off.port}`
    for (const path of ['/.pomerium/routes', '/.pomerium/api/v1/routes']) {
      const res = await http(`${base}${path}`, undefined, { accept: 'application/json' })
      assert.equal(res.status, 404, path)
    }
  })
})
