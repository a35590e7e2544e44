/**
 * Persistent and shared session storage through the running process (issue 5): sessions survive
 * a restart with the `file` (SQLite) and `postgres` backends, and two instances on one PostgreSQL
 * share sessions, sign-out and refreshed tokens. Uses the real PostgreSQL at 127.0.0.1:5432; when
 * nothing answers there the PostgreSQL cases are skipped loudly, except under CI, where they fail.
 */
import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { request } from 'undici'
import { signIn, startSignInSetup } from '../fixtures/sign-in.js'
import type { SignInSetup } from '../fixtures/sign-in.js'
import { waitFor } from '../fixtures/wait.js'
import { freshDatabase, PG_ADMIN } from '../fixtures/postgres-database.js'


async function postgresAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_ADMIN, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    await client.end()
    return true
  } catch {
    return false
  }
}

const pgUp = await postgresAvailable()
if (!pgUp && process.env['CI'] === undefined) {
  console.warn('\n*** PostgreSQL is not answering at 127.0.0.1:5432: the PostgreSQL storage tests are SKIPPED (they run, and must pass, under CI) ***\n')
}
const pgOptions = pgUp || process.env['CI'] !== undefined ? {} : { skip: 'PostgreSQL not reachable at 127.0.0.1:5432 (CI unset)' }


async function status(setup: SignInSetup, url: string, cookie: string): Promise<number> {
  const res = await request(url, { dispatcher: setup.dispatcher, headers: { cookie, accept: 'text/html' } })
  await res.body.dump()
  return res.statusCode
}

function appCookie(setup: SignInSetup, jar: Awaited<ReturnType<typeof signIn>>['jar']): string {
  return `_pomerium=${jar.forHost(new URL(setup.app).host)['_pomerium']}`
}

describe('file storage', () => {
  let setup: SignInSetup
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-file-store-'))
    setup = await startSignInSetup({ settings: { databroker_storage_type: 'file', databroker_storage_connection_string: `file://${dir}/` } })
  })
  after(async () => {
    await setup.close()
  })

  test('a session survives a restart', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    const cookie = appCookie(setup, jar)
    assert.equal(await status(setup, `${setup.app}/`, cookie), 200)
    await setup.restart()
    assert.equal(await status(setup, `${setup.app}/`, cookie), 200)
  })
})

describe('postgres storage', pgOptions, () => {
  let setup: SignInSetup
  let db: Awaited<ReturnType<typeof freshDatabase>>
  before(async () => {
    db = await freshDatabase()
    setup = await startSignInSetup({
      idp: { tokenLifetimes: { accessToken: 3, idToken: 3 } },
      settings: { databroker_storage_connection_string: db.url },
    })
  })
  after(async () => {
    await setup?.close()
    await db?.drop()
  })

  test('a session survives a restart', async () => {
    const { jar } = await signIn(setup, `${setup.app}/`, 'alice@example.com', 'alice-password')
    const cookie = appCookie(setup, jar)
    await setup.restart()
    assert.equal(await status(setup, `${setup.app}/`, cookie), 200)
  })

  test('two instances share sessions, sign-out and refreshed tokens', async () => {
    const b = await setup.startAnother()
    const onB = (path: string): string => `https://app.localhost:${b.port}${path}`
    const { jar } = await signIn(setup, `${setup.app}/`, 'bob@example.com', 'bob-password')
    const cookie = appCookie(setup, jar)
    assert.equal(await status(setup, onB('/'), cookie), 200, 'a session made through A works through B')

    // Across token refreshes both instances serve the session; whichever refreshes, neither ends it
    // (the provider revokes the grant, refresh tokens included, if a spent refresh token is reused).
    const refreshTokens = (): number => {
      const sub = setup.idp.getUser('bob@example.com')?.sub
      return setup.idp.artifacts('RefreshToken').filter((a) => a.payload['accountId'] === sub).length
    }
    const issued = refreshTokens()
    await waitFor('a refresh of the session', () => refreshTokens() > issued, { timeoutMs: 15_000 })
    const both = await Promise.all([status(setup, `${setup.app}/r`, cookie), status(setup, onB('/r'), cookie)])
    assert.deepEqual(both, [200, 200])
    await waitFor('another refresh of the session', () => refreshTokens() > issued + 1, { timeoutMs: 15_000 })
    assert.deepEqual(await Promise.all([status(setup, `${setup.app}/r2`, cookie), status(setup, onB('/r2'), cookie)]), [200, 200])

    const out = await request(`${setup.app}/.pomerium/sign_out`, { dispatcher: setup.dispatcher, headers: { cookie } })
    await out.body.dump()
    const atAuthn = await request(String(out.headers['location']), { dispatcher: setup.dispatcher, headers: { cookie: `_pomerium=${jar.forHost(new URL(setup.authn).host)['_pomerium']}` } })
    await atAuthn.body.dump()
    const started = Date.now()
    let refused = false
    while (Date.now() - started < 1000 && !refused) refused = (await status(setup, onB('/'), cookie)) === 302
    assert.ok(refused, 'sign-out through A is refused through B within a second')
  })
})
