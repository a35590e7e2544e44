/**
 * Device identity in real headless Chromium (docs/devices.md): WebAuthn through Chromium's
 * virtual authenticators (CDP `WebAuthn` domain, `usb` security keys and `internal` platform
 * authenticators with user verification) against the real Portcullis process, a real OpenID
 * provider, and memory or PostgreSQL storage.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import type { BrowserContext, CDPSession, Page } from 'playwright-core'
import { browserTestOptions, launchBrowser, screenshot } from './fixtures/browser.js'
import type { TestBrowser } from './fixtures/browser.js'
import { testPki } from './fixtures/certs.js'
import { MAIN_SCRIPT } from './fixtures/portcullis.js'
import { freshDatabase } from './fixtures/postgres-database.js'
import type { FreshDatabase } from './fixtures/postgres-database.js'
import { startSignInSetup } from './fixtures/sign-in.js'
import type { SignInSetup } from './fixtures/sign-in.js'
import { waitFor } from './fixtures/wait.js'

const ADMIN = 'https://admin.localhost'


interface Person {
  readonly context: BrowserContext
  readonly page: Page
  readonly cdp: CDPSession
}

async function addAuthenticator(cdp: CDPSession, transport: 'usb' | 'internal', options: { backupEligible?: boolean } = {}): Promise<string> {
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport,
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
      // A synced passkey's authenticator: its keys may be backed up (WebAuthn's BE flag).
      ...(options.backupEligible === true ? { defaultBackupEligibility: true } : {}),
    },
  })
  return authenticatorId
}

for (const storage of ['memory', 'postgres'] as const) {
  describe(`devices in Chromium (${storage} storage)`, browserTestOptions(), () => {
    let setup: SignInSetup
    let browser: TestBrowser
    let db: FreshDatabase | undefined
    let base: string

    before(async () => {
      db = storage === 'postgres' ? await freshDatabase('portcullis_devices') : undefined
      setup = await startSignInSetup({
        settings: {
          ...(db ? { databroker_storage_type: 'postgres', databroker_storage_connection_string: db.url } : {}),
          device_types: [
            { id: 'kiosk', name: 'Kiosk key', approval_required: true },
            // Models vouched for by a maker's root: the test CA, which no virtual authenticator chains to.
            { id: 'vouched', name: 'Vouched model', attestation_formats: ['packed'], attestation_roots: [testPki().ca.certFile] },
          ],
          device_approvers: { allow: { or: [{ email: { is: 'alice@example.com' } }] } },
        },
        routes: (upstream) => [
          { from: ADMIN, prefix: '/any', to: upstream, policy: { allow: { and: [{ authenticated_user: true }, { device: { type: 'any' } }] } } },
          { from: ADMIN, prefix: '/enclave', to: upstream, policy: { allow: { and: [{ authenticated_user: true }, { device: { type: 'enclave_only' } }] } } },
          { from: ADMIN, prefix: '/pinned', to: upstream, policy: { allow: { and: [{ device: { type: 'any', is: 'not-this-device' } }] } } },
          { from: ADMIN, prefix: '/kiosk', to: upstream, policy: { allow: { and: [{ device: { type: 'kiosk' } }] } } },
          { from: ADMIN, prefix: '/vouched', to: upstream, policy: { allow: { and: [{ device: { type: 'vouched' } }] } } },
        ],
      })
      base = `https://admin.localhost:${setup.port}`
      browser = await launchBrowser()
    })
    after(async () => {
      await browser?.close()
      await setup?.close()
      await db?.drop()
    })

    async function person(email: string, password: string): Promise<Person> {
      const context = await browser.newContext({ ignoreHTTPSErrors: true })
      const page = await context.newPage()
      const cdp = await context.newCDPSession(page)
      await cdp.send('WebAuthn.enable')
      await page.goto(`${setup.app}/`)
      await page.waitForSelector('form#login')
      await page.fill('input[name=email]', email)
      await page.fill('input[name=password]', password)
      await Promise.all([page.waitForURL(`${setup.app}/`), page.click('form#login [type=submit]')])
      return { context, page, cdp }
    }

    /** Clicks a button of the device page and waits for where it leads (or for its status line). */
    async function ceremony(p: Person, button: 'register' | 'authenticate'): Promise<void> {
      const before = p.page.url()
      await p.page.click(`#${button}`)
      // Polled from here: the page's CSP (script by nonce only) forbids waitForFunction's eval.
      await waitFor(`the device ceremony to finish (${button})`, async () => {
        if (p.page.url() !== before) return true
        const said = (await p.page.locator('#status').textContent({ timeout: 200 }).catch(() => '')) ?? ''
        return /refused|could not|not |already|another|went backwards/i.test(said)
      }).catch(async (err: unknown) => {
        throw new Error(`${String(err)}; at ${p.page.url()}, status: ${await p.page.locator('#status').textContent().catch(() => '?')}`)
      })
      await p.page.waitForLoadState()
    }

    const status = async (p: Person): Promise<string> => `${p.page.url()}: ${(await p.page.textContent('body')) ?? ''}`
    const body = async (p: Person): Promise<string> => (await p.page.textContent('body')) ?? ''

    let alice: Person
    let aliceKey: string

    it('a route that needs a device of type any sends a signed-in user to enrollment; a security key gets them in', async () => {
      alice = await person('alice@example.com', 'alice-password')
      aliceKey = await addAuthenticator(alice.cdp, 'usb')
      const response = await alice.page.goto(`${base}/any/page?x=1`)
      assert.equal(response?.status(), 200)
      const url = new URL(alice.page.url())
      assert.equal(url.pathname, '/.pomerium/webauthn')
      assert.equal(url.searchParams.get('pomerium_device_type'), 'any')
      await screenshot(alice.page, `devices-${storage}-enroll`)
      await ceremony(alice, 'register')
      assert.equal(new URL(alice.page.url()).pathname, '/any/page', await status(alice))
      assert.match(await body(alice), /"url":"\/any\/page\?x=1"/)
    })

    /** Signs this person out of Portcullis and the provider (new cookies) and in again: a new session without devices. */
    async function signInAgain(p: Person, email: string, password: string): Promise<void> {
      await p.context.clearCookies()
      await p.page.goto(`${setup.app}/`)
      await p.page.waitForSelector('form#login')
      await p.page.fill('input[name=email]', email)
      await p.page.fill('input[name=password]', password)
      await Promise.all([p.page.waitForURL(`${setup.app}/`), p.page.click('form#login [type=submit]')])
    }

    async function deviceCount(p: Person): Promise<number> {
      await p.page.goto(`${base}/.pomerium/`)
      return await p.page.locator('form[action="/.pomerium/devices/remove"]').count()
    }

    it('a new session uses the registered key without enrolling again', async () => {
      await signInAgain(alice, 'alice@example.com', 'alice-password')
      await alice.page.goto(`${base}/any/second`)
      assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
      assert.equal(await alice.page.locator('#authenticate').count(), 1, 'offers the registered device')
      await ceremony(alice, 'authenticate')
      const landed = new URL(alice.page.url()).pathname
      assert.equal(landed, '/any/second', landed === '/any/second' ? '' : await status(alice))
      assert.equal(await deviceCount(alice), 1, 'still one device')
    })

    it('the user page lists the device: type, dates, approval', async () => {
      await alice.page.goto(`${base}/.pomerium/`)
      const text = await body(alice)
      assert.match(text, /Devices/)
      assert.match(text, /Any device/)
      assert.match(text, /Last used/)
      await screenshot(alice.page, `devices-${storage}-user-page`)
    })

    it('a device that is not the one a rule names gets 450 with the rule on the page', async () => {
      const response = await alice.page.goto(`${base}/pinned/`)
      assert.equal(response?.status(), 450)
      assert.match(await body(alice), /not one this route allows/)
      assert.match(await body(alice), /not-this-device/)
    })

    it('enclave_only refuses a security key and a synced passkey, and accepts a platform authenticator', async () => {
      await alice.page.goto(`${base}/enclave/x`)
      assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
      assert.equal(new URL(alice.page.url()).searchParams.get('pomerium_device_type'), 'enclave_only')
      // The browser would offer only platform authenticators; a client that sends a security
      // key's registration anyway is refused by the server.
      const refused = await alice.page.evaluate<{ status: number; body: { error: string } }>(`(async () => {
        const data = JSON.parse(document.getElementById('page-data').textContent)
        const dec = (v) => Uint8Array.from(atob(v.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((v.length + 3) % 4)), (c) => c.charCodeAt(0))
        const o = data.registration
        const cred = await navigator.credentials.create({
          publicKey: {
            challenge: dec(o.challenge),
            rp: o.rp,
            user: { ...o.user, id: dec(o.user.id) },
            pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
            authenticatorSelection: { authenticatorAttachment: 'cross-platform', userVerification: 'required' },
            attestation: 'direct',
          },
        })
        const answer = await fetch(data.action, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'register', state: data.state, credential: cred.toJSON() }) })
        return { status: answer.status, body: await answer.json() }
      })()`)
      assert.equal(refused.status, 400)
      assert.match(refused.body.error, /not a Platform authenticator/)
      // A platform authenticator whose keys can be synced (a passkey) is not an enclave either.
      await alice.page.reload()
      const synced = await addAuthenticator(alice.cdp, 'internal', { backupEligible: true })
      await ceremony(alice, 'register')
      assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
      assert.match((await alice.page.textContent('#status')) ?? '', /can be synced/)
      await alice.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: synced })
      await alice.page.reload()
      await addAuthenticator(alice.cdp, 'internal')
      await ceremony(alice, 'register')
      const landed = new URL(alice.page.url()).pathname
      assert.equal(landed, '/enclave/x', landed === '/enclave/x' ? '' : await status(alice))
    })

    it('a removed device ends its grants at once: the route asks for enrollment again', async () => {
      const response = await alice.page.goto(`${base}/any/again`)
      assert.equal(response?.status(), 200)
      assert.equal(new URL(alice.page.url()).pathname, '/any/again')
      await alice.page.goto(`${base}/.pomerium/`)
      const before = await alice.page.locator('form[action="/.pomerium/devices/remove"]').count()
      assert.equal(before, 2)
      // The first listed is the security key (registered first).
      await Promise.all([alice.page.waitForNavigation(), alice.page.locator('form[action="/.pomerium/devices/remove"] button').first().click()])
      const left = await alice.page.locator('form[action="/.pomerium/devices/remove"]').count()
      assert.equal(left, 1, left === 1 ? '' : await status(alice))
      await alice.page.goto(`${base}/any/again`)
      assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn', 'enrollment again')
      assert.equal(await alice.page.locator('#authenticate').count(), 0, 'the removed key is not offered')
      // The platform authenticator (enclave_only) still works on its route.
      await alice.page.goto(`${base}/enclave/still`)
      assert.equal(new URL(alice.page.url()).pathname, '/enclave/still')
    })

    it('a device type that requires approval answers 450 until an approver approves it, then 200', async () => {
      await alice.page.goto(`${base}/kiosk/x`)
      assert.equal(new URL(alice.page.url()).searchParams.get('pomerium_device_type'), 'kiosk')
      await alice.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: aliceKey })
      aliceKey = await addAuthenticator(alice.cdp, 'usb')
      await ceremony(alice, 'register')
      assert.equal(new URL(alice.page.url()).pathname, '/kiosk/x')
      const pending = await alice.page.reload()
      assert.equal(pending?.status(), 450)
      assert.match(await body(alice), /waits for an approver/)
      await alice.page.goto(`${base}/.pomerium/devices`)
      await screenshot(alice.page, `devices-${storage}-approvers`)
      const approve = alice.page.locator('li', { hasText: 'Kiosk key' }).locator('button', { hasText: 'Approve' })
      await Promise.all([alice.page.waitForNavigation(), approve.click()])
      assert.match(await body(alice), /yes \(alice@example.com\)/)
      const ok = await alice.page.goto(`${base}/kiosk/x`)
      assert.equal(ok?.status(), 200)
      assert.equal(new URL(alice.page.url()).pathname, '/kiosk/x', 'reached the app, not the device page')
      // Revoked: 450 again at once.
      await alice.page.goto(`${base}/.pomerium/devices`)
      await Promise.all([alice.page.waitForNavigation(), alice.page.locator('li', { hasText: 'Kiosk key' }).locator('button', { hasText: 'Revoke' }).click()])
      assert.equal((await alice.page.goto(`${base}/kiosk/x`))?.status(), 450)
    })

    it('a tampered device link is refused with 400', async () => {
      await alice.page.goto(`${base}/any/tamper`)
      const url = new URL(alice.page.url())
      assert.equal(url.pathname, '/.pomerium/webauthn')
      url.searchParams.set('pomerium_device_type', 'kiosk')
      assert.equal((await alice.page.goto(url.href))?.status(), 400)
      url.searchParams.set('pomerium_device_type', 'any')
      url.searchParams.set('pomerium_redirect_uri', 'https://evil.example/')
      assert.equal((await alice.page.goto(url.href))?.status(), 400)
    })

    it("another user's credential is refused", async () => {
      // Alice has a security key again (registered at /any).
      await alice.page.goto(`${base}/any/mine`)
      if (new URL(alice.page.url()).pathname === '/.pomerium/webauthn') await ceremony(alice, 'register')
      assert.equal(new URL(alice.page.url()).pathname, '/any/mine')
      const creds = await alice.cdp.send('WebAuthn.getCredentials', { authenticatorId: aliceKey })
      const aliceCred = creds.credentials[0]
      assert.ok(aliceCred)
      const bob = await person('bob@example.com', 'bob-password')
      const bobKey = await addAuthenticator(bob.cdp, 'usb')
      await bob.page.goto(`${base}/any/bob`)
      await ceremony(bob, 'register')
      assert.equal(new URL(bob.page.url()).pathname, '/any/bob')
      // A new session for Bob; his authenticator now also holds Alice's key.
      await signInAgain(bob, 'bob@example.com', 'bob-password')
      await bob.cdp.send('WebAuthn.addCredential', { authenticatorId: bobKey, credential: { ...aliceCred, rpId: 'admin.localhost' } })
      await bob.page.goto(`${base}/any/bob`)
      assert.equal(new URL(bob.page.url()).pathname, '/.pomerium/webauthn')
      const aliceId = Buffer.from(aliceCred.credentialId, 'base64').toString('base64url')
      const answer = await bob.page.evaluate<{ status: number; body: { error: string } }>(`(async () => {
        const data = JSON.parse(document.getElementById('page-data').textContent)
        const dec = (v) => Uint8Array.from(atob(v.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((v.length + 3) % 4)), (c) => c.charCodeAt(0))
        const cred = await navigator.credentials.get({ publicKey: { challenge: dec(data.authentication.challenge), rpId: data.authentication.rpId, allowCredentials: [{ type: 'public-key', id: dec(${JSON.stringify(aliceId)}) }] } })
        const res = await fetch(data.action, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'authenticate', state: data.state, credential: cred.toJSON() }) })
        return { status: res.status, body: await res.json() }
      })()`)
      assert.equal(answer.status, 403)
      assert.match(answer.body.error, /another user/)
      await bob.context.close()
    })

    it('a sign counter that goes backwards (a cloned key) is refused', async () => {
      const before = await alice.cdp.send('WebAuthn.getCredentials', { authenticatorId: aliceKey })
      // Use the key once more so the stored counter is ahead of a copy made earlier.
      await signInAgain(alice, 'alice@example.com', 'alice-password')
      await alice.page.goto(`${base}/any/count`)
      await ceremony(alice, 'authenticate')
      assert.equal(new URL(alice.page.url()).pathname, '/any/count')
      // The authenticator also holds the kiosk key: the one copied is the one that just signed.
      const after = await alice.cdp.send('WebAuthn.getCredentials', { authenticatorId: aliceKey })
      const used = after.credentials.find((c) => c.signCount > (before.credentials.find((b) => b.credentialId === c.credentialId)?.signCount ?? 0))
      const original = before.credentials.find((c) => c.credentialId === used?.credentialId)
      assert.ok(original)
      // The clone: the same key on another authenticator, its counter where the copy was made.
      await signInAgain(alice, 'alice@example.com', 'alice-password')
      await alice.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: aliceKey })
      aliceKey = await addAuthenticator(alice.cdp, 'usb')
      await alice.cdp.send('WebAuthn.addCredential', { authenticatorId: aliceKey, credential: { ...original, rpId: 'admin.localhost', signCount: 0 } })
      await alice.page.goto(`${base}/any/count`)
      await ceremony(alice, 'authenticate')
      assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
      assert.match(await alice.page.textContent('#status') ?? '', /counter went backwards/)
      await waitFor('the refusal to be logged', () => setup.portcullis.logs.some((l) => l.includes('signature counter went backwards')))
      // Suspended, not just refused once: the user page says so.
      await alice.page.goto(`${base}/.pomerium/`)
      assert.match(await body(alice), /Suspended/)
    })

    it("a type that names attestation roots refuses a registration whose chain does not end in one", async () => {
      await alice.page.goto(`${base}/vouched/x`)
      assert.equal(new URL(alice.page.url()).searchParams.get('pomerium_device_type'), 'vouched')
      await ceremony(alice, 'register')
      assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
      assert.match((await alice.page.textContent('#status')) ?? '', /not a Vouched model: its attestation/)
    })

    it('an enrollment link registers an approved device once; the second use is refused', async () => {
      await alice.page.goto(`${base}/.pomerium/devices`)
      await alice.page.fill('#enroll input[name=user]', 'bob@example.com')
      await alice.page.selectOption('#enroll select[name=type]', 'kiosk')
      await Promise.all([alice.page.waitForNavigation(), alice.page.click('#enroll button')])
      const link = ((await alice.page.textContent('#link')) ?? '').trim()
      assert.match(link, /\/\.pomerium\/webauthn\?pomerium_enrollment_token=/)
      // Alice cannot use Bob's link.
      assert.equal((await alice.page.goto(link))?.status(), 403)
      const bob = await person('bob@example.com', 'bob-password')
      await addAuthenticator(bob.cdp, 'usb')
      assert.equal((await bob.page.goto(link))?.status(), 200)
      await ceremony(bob, 'register')
      assert.equal(new URL(bob.page.url()).pathname, '/.pomerium/device-enrolled', await status(bob))
      assert.match(await body(bob), /approved/)
      // Approved from the start: the kiosk route admits Bob without an approver.
      assert.equal((await bob.page.goto(`${base}/kiosk/bob`))?.status(), 200)
      assert.equal(new URL(bob.page.url()).pathname, '/kiosk/bob', 'reached the app, not the device page')
      const again = await bob.page.goto(link)
      assert.equal(again?.status(), 400)
      assert.match(await body(bob), /already used or has expired/)
      // A link whose token was altered is refused before any lookup.
      assert.equal((await bob.page.goto(link.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))))?.status(), 400)
      await bob.context.close()
    })

    if (storage === 'postgres') {
      it('another instance on the same PostgreSQL honours the devices: a bound session passes, a new session uses the key', async () => {
        const other = await setup.startAnother()
        const there = `https://admin.localhost:${other.port}`
        // A fresh key (the clone of the test before is refused for good), registered on the first
        // instance; the session is shared through PostgreSQL and the cookie is per host.
        await alice.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: aliceKey })
        aliceKey = await addAuthenticator(alice.cdp, 'usb')
        await alice.page.goto(`${base}/any/here`)
        assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
        await ceremony(alice, 'register')
        assert.equal(new URL(alice.page.url()).pathname, '/any/here', await status(alice))
        const passed = await alice.page.goto(`${there}/any/there`)
        assert.equal(passed?.status(), 200)
        assert.equal(new URL(alice.page.url()).origin, there)
        assert.equal(new URL(alice.page.url()).pathname, '/any/there', 'no device page on the other instance')
        // A new session, signed in through the first instance, proves the key on the second.
        await signInAgain(alice, 'alice@example.com', 'alice-password')
        await alice.page.goto(`${there}/any/again`)
        assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/webauthn')
        await ceremony(alice, 'authenticate')
        assert.equal(new URL(alice.page.url()).pathname, '/any/again', await status(alice))
      })

      it('portcullis devices lists, revokes and approves devices in the same storage', async () => {
        const run = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
          await new Promise((resolve) => {
            execFile(process.execPath, [MAIN_SCRIPT, 'devices', ...args, '--config', setup.portcullis.configFile], (err, stdout, stderr) => {
              resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
            })
          })
        // An enrollment link from the command, used by Alice (signed in, her key at hand).
        const link = await run('enroll', '--user', 'alice@example.com', '--type', 'kiosk', '--url', base, '--lifetime', '1h')
        assert.equal(link.code, 0, link.stderr)
        assert.match(link.stdout.trim(), new RegExp(`^${base.replace(/[.]/g, '\\.')}/\\.pomerium/webauthn\\?pomerium_enrollment_token=`))
        assert.equal((await alice.page.goto(link.stdout.trim()))?.status(), 200, "the server accepts the command's link")
        await ceremony(alice, 'register')
        assert.equal(new URL(alice.page.url()).pathname, '/.pomerium/device-enrolled')
        const listed = await run('list', '--user', 'alice@example.com', '--json')
        assert.equal(listed.code, 0, listed.stderr)
        const devices = JSON.parse(listed.stdout) as { id: string; type: string; approved: boolean; approved_by?: string }[]
        const kiosk = devices.find((d) => d.type === 'kiosk' && d.approved)
        assert.ok(kiosk, listed.stdout)
        assert.equal(kiosk.approved_by, 'enrollment link')
        const open = async (path: string): Promise<number | undefined> => {
          const response = await alice.page.goto(`${base}${path}`)
          assert.equal(new URL(alice.page.url()).pathname, path, 'no redirect to the device page')
          return response?.status()
        }
        assert.equal(await open('/kiosk/cli-1'), 200)
        assert.equal((await run('revoke', `--id=${kiosk.id}`)).code, 0)
        assert.equal(await open('/kiosk/cli-2'), 450)
        assert.equal((await run('approve', `--id=${kiosk.id}`)).code, 0)
        assert.equal(await open('/kiosk/cli-3'), 200)
        assert.equal((await run('approve', 'no-such-device')).code, 1)
      })
    }
  })
}
