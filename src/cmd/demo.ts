/**
 * `portcullis demo` (what `npm start` runs): everything on loopback, no internet needed.
 *
 *   http://localhost:8080/        public welcome page with the links
 *   http://app.localhost:8080/    "Team app": any signed-in user
 *   http://admin.localhost:8080/  "Admin console": admins only (others get the 403 page)
 *   http://127.0.0.1:8081/        Portcullis' built-in OpenID provider with two users whose
 *                                 passwords are made up at start and printed
 *
 * `*.localhost` names reach this machine in every current browser, and browsers treat them as
 * secure origins, so the Secure session cookies work over plain http here. PORT moves everything
 * (the provider listens on PORT+1).
 */
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashPassword } from '../builtin-idp/password.js'
import { escapeHtml } from '../ui/pages.js'
import { serve } from './serve.js'

const PAGE_STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#1f2937}td{padding:.2rem .6rem;border-bottom:1px solid #e5e7eb;font-family:monospace;font-size:.85rem;overflow-wrap:anywhere}a{color:#4338ca}'

/** A sample upstream that greets the signed-in user and shows the headers it received. */
function sampleApp(title: string, note: string): Server {
  return createServer((req, res) => {
    const rows = Object.entries(req.headers)
      .map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(String(v))}</td></tr>`)
      .join('')
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(`<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title>
<style>${PAGE_STYLE}</style></head><body><h1>${escapeHtml(title)}</h1><p>${note}</p>
<p>Path: <code>${escapeHtml(req.url ?? '')}</code> · <a href="/.pomerium/">Your session</a> · <a href="/.pomerium/sign_out">Sign out</a></p>
<h2>Headers this app received</h2><table>${rows}</table></body></html>`)
  })
}

function welcome(port: number, users: readonly { email: string; role: string }[]): Server {
  return createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(`<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Portcullis demo</title>
<style>${PAGE_STYLE}</style></head><body><h1>Portcullis demo</h1>
<p>This page is public. The two apps below are behind Portcullis: opening one sends you to sign in at Portcullis' built-in identity provider.</p>
<ul><li><a href="http://app.localhost:${port}/">Team app</a>: any signed-in user</li>
<li><a href="http://admin.localhost:${port}/">Admin console</a>: admins only</li></ul>
<p>Users (passwords are printed in the terminal that runs the demo):</p>
<ul>${users.map((u) => `<li><code>${escapeHtml(u.email)}</code>: ${escapeHtml(u.role)}</li>`).join('')}</ul>
<p>After signing in, <a href="http://app.localhost:${port}/.pomerium/">/.pomerium/</a> shows your session and has the sign-out button.</p></body></html>`)
  })
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return (server.address() as AddressInfo).port
}

export async function demo(): Promise<number> {
  const port = Number(process.env['PORT'] ?? 8080)
  const idpPort = port + 1
  const users = [
    { email: 'admin@example.com', name: 'Ada Admin', groups: ['admins', 'staff'], role: 'admin (groups admins, staff)' },
    { email: 'user@example.com', name: 'Uma User', groups: ['staff'], role: 'regular user (group staff)' },
  ]
  const passwords = users.map(() => randomBytes(9).toString('base64url'))
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'))
  const usersFile = join(dir, 'users.yaml')
  const entries = await Promise.all(
    users.map(async (u, i) => `  - email: ${u.email}\n    name: ${u.name}\n    groups: [${u.groups.join(', ')}]\n    password_hash: "${await hashPassword(passwords[i] as string)}"\n`),
  )
  writeFileSync(usersFile, `# Demo users of the built-in identity provider\nusers:\n${entries.join('')}`, { mode: 0o600 })

  const servers = [
    welcome(port, users),
    sampleApp('Team app', 'Any signed-in user may open this app.'),
    sampleApp('Admin console', 'Only members of the <code>admins</code> group may open this app.'),
  ]
  const [welcomePort, appPort, adminPort] = await Promise.all(servers.map(listen))
  const file = join(dir, 'config.yaml')
  writeFileSync(
    file,
    `# Portcullis demo configuration (Pomerium format, plus the built-in identity provider)
address: 127.0.0.1:${port}
insecure_server: true
# One process: the demo's upstreams and users live in this process.
workers: 1
shared_secret: ${randomBytes(32).toString('base64')}
cookie_secret: ${randomBytes(32).toString('base64')}
authenticate_service_url: http://authenticate.localhost:${port}
idp_provider: builtin
idp_provider_url: http://127.0.0.1:${idpPort}
builtin_idp_address: 127.0.0.1:${idpPort}
builtin_idp_users_file: ${usersFile}
routes:
  - from: http://app.localhost
    to: http://127.0.0.1:${appPort}
    allow_any_authenticated_user: true
    pass_identity_headers: true
  - from: http://admin.localhost
    to: http://127.0.0.1:${adminPort}
    name: Admin console
    pass_identity_headers: true
    policy:
      allow:
        and:
          - groups:
              has: admins
  - from: http://localhost
    to: http://127.0.0.1:${welcomePort}
    allow_public_unauthenticated_access: true
`,
  )
  process.stdout.write(
    [
      '',
      'Portcullis demo',
      `  open            http://localhost:${port}/`,
      `  team app        http://app.localhost:${port}/    (any signed-in user)`,
      `  admin console   http://admin.localhost:${port}/  (admins)`,
      ...users.map((u, i) => `  sign in as      ${u.email}  password ${passwords[i]}  (${u.role})`),
      `  config          ${file}`,
      '',
      '',
    ].join('\n'),
  )
  const code = await serve(file)
  for (const s of servers) s.close()
  return code
}
