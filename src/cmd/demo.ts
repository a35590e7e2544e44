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
 * secure origins, so the Secure session cookies work over plain http here. PORT moves everything:
 * the provider listens on PORT+1 and the health checks on PORT+2; all three are checked before
 * anything starts. The log is quiet (warnings only) so that the sign-in lines stay in view; Enter
 * prints them again. The temporary folder with the config and users file is private (0700/0600)
 * and removed when the demo ends.
 */
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashPassword } from '../builtin-idp/password.js'
import { flushLogs } from '../shared/log.js'
import { escapeHtml } from '../ui/pages.js'
import { serve } from './serve.js'
import { processStopRequest } from '../all-in-one/stop.js'

const PAGE_STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#1f2937}a{color:#4338ca}' +
  'table{border-collapse:collapse;width:100%}td{padding:.2rem .6rem;border-bottom:1px solid #e5e7eb;font-family:monospace;font-size:.85rem;vertical-align:top}' +
  // Header names stay on one line; values take the rest of the width and wrap anywhere.
  'td.name{white-space:nowrap;width:1%}td.value{overflow-wrap:anywhere}summary{cursor:pointer}'

/** Values longer than this (the identity JWT) are folded: their start, and the rest on a click. */
const FOLD_LENGTH = 200

function headerValueCell(value: string): string {
  if (value.length <= FOLD_LENGTH) return `<td class="value">${escapeHtml(value)}</td>`
  return `<td class="value"><details><summary>${escapeHtml(value.slice(0, 40))}… (${value.length} characters)</summary>${escapeHtml(value)}</details></td>`
}

/** A sample upstream that greets the signed-in user and shows the headers it received. */
function sampleApp(title: string, note: string): Server {
  return createServer((req, res) => {
    const rows = Object.entries(req.headers)
      .map(([k, v]) => `<tr><td class="name">${escapeHtml(k)}</td>${headerValueCell(String(v))}</tr>`)
      .join('')
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(`<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)}</title>
<style>${PAGE_STYLE}</style></head><body><h1>${escapeHtml(title)}</h1><p>${note}</p>
<p>Path: <code>${escapeHtml(req.url ?? '')}</code> · <a href="/.pomerium/">Your session</a> · <a href="/.pomerium/sign_out">Sign out</a></p>
<h2>Headers this app received</h2><table id="headers">${rows}</table></body></html>`)
  })
}

function welcome(port: number, users: readonly { email: string; role: string }[]): Server {
  return createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    res.end(`<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Portcullis demo</title>
<style>${PAGE_STYLE}</style></head><body><h1>Portcullis demo</h1>
<p>This page is public. The apps below are behind Portcullis: opening one sends you to sign in at Portcullis' built-in identity provider.</p>
<ul><li><a href="http://app.localhost:${port}/">Team app</a>: any signed-in user</li>
<li><a href="http://admin.localhost:${port}/">Admin console</a>: admins only</li>
<li><a href="http://device.localhost:${port}/">Device app</a>: any signed-in user, from a registered device (a security key, or a platform authenticator such as Touch ID or Windows Hello)</li></ul>
<p>Users (passwords are printed in the terminal that runs the demo; press Enter there to see them again):</p>
<ul>${users.map((u) => `<li><code>${escapeHtml(u.email)}</code>: ${escapeHtml(u.role)}</li>`).join('')}</ul>
<p>After signing in, <a href="http://app.localhost:${port}/.pomerium/">/.pomerium/</a> shows your session and has the sign-out button.</p></body></html>`)
  })
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return (server.address() as AddressInfo).port
}

/** Whether this process could listen on 127.0.0.1:port right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
    probe.once('error', () => resolve(false))
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)))
  })
}

/**
 * The demo's ports, or a message saying which is unusable and how to choose others: found
 * before the passwords are printed, rather than as a stack trace after them.
 */
async function demoPorts(text: string | undefined): Promise<{ port: number } | { error: string }> {
  const port = Number(text ?? 8080)
  const howTo = 'Choose other ports with PORT, for example: PORT=9090 npm start (or PORT=9090 portcullis demo); the demo uses PORT, PORT+1 and PORT+2.'
  if (!Number.isInteger(port) || port < 1 || port > 65533) return { error: `PORT=${text ?? ''} is not a port number (1 to 65533). ${howTo}` }
  const uses: [number, string][] = [
    [port, 'the demo itself, http://localhost:PORT/'],
    [port + 1, 'the built-in identity provider, PORT+1'],
    [port + 2, 'health checks, PORT+2'],
  ]
  for (const [p, use] of uses) {
    if (!(await portFree(p))) return { error: `port ${p} on 127.0.0.1 is in use (${use}). ${howTo}` }
  }
  return { port }
}

export async function demo(): Promise<number> {
  const stop = processStopRequest()
  const ports = await demoPorts(process.env['PORT'])
  if ('error' in ports) {
    process.stderr.write(`portcullis demo: ${ports.error}\n`)
    return 1
  }
  const { port } = ports
  const idpPort = port + 1
  const users = [
    { email: 'admin@example.com', name: 'Ada Admin', groups: ['admins', 'staff'], role: 'admin (groups admins, staff)' },
    { email: 'user@example.com', name: 'Uma User', groups: ['staff'], role: 'regular user (group staff)' },
  ]
  const passwords = users.map(() => randomBytes(9).toString('base64url'))
  // mkdtemp makes the folder 0700; the files in it hold secrets and password hashes: 0600.
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'))
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true })
  // Also when the process ends through process.exit (main.ts, or a fatal error).
  process.once('exit', removeDir)
  const servers: Server[] = []
  try {
    const usersFile = join(dir, 'users.yaml')
    const entries = await Promise.all(
      users.map(async (u, i) => `  - email: ${u.email}\n    name: ${u.name}\n    groups: [${u.groups.join(', ')}]\n    password_hash: "${await hashPassword(passwords[i] as string)}"\n`),
    )
    // The users file is also the demo's directory (docs/directory.md): groups with ids and names,
    // as a directory sync or SCIM would supply them; edit it and membership changes within seconds.
    const groups = '# Directory groups: policies match the id or the name; the JWT carries both.\ngroups:\n  - {id: grp-admins, name: admins}\n  - {id: grp-staff, name: staff}\n'
    writeFileSync(usersFile, `# Demo users of the built-in identity provider\n${groups}users:\n${entries.join('')}`, { mode: 0o600 })

    servers.push(
      welcome(port, users),
      sampleApp('Team app', 'Any signed-in user may open this app.'),
      sampleApp('Admin console', 'Only members of the <code>admins</code> group may open this app.'),
      sampleApp('Device app', 'Any signed-in user may open this app from a registered device (a security key, or this computer or phone: Touch ID, Windows Hello, Android). Your devices are listed on <a href="/.pomerium/">your session page</a>.'),
    )
    const [welcomePort, appPort, adminPort, devicePort] = await Promise.all(servers.map(listen))
    const file = join(dir, 'config.yaml')
    writeFileSync(
      file,
      `# Portcullis demo configuration (Pomerium format, plus the built-in identity provider)
address: 127.0.0.1:${port}
insecure_server: true
# Warnings only: no access log lines push the sign-in details off the screen.
log_level: warn
health_check_addr: 127.0.0.1:${port + 2}
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
    name: Team app
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
  - from: http://device.localhost
    to: http://127.0.0.1:${devicePort}
    name: Device app
    pass_identity_headers: true
    policy:
      allow:
        and:
          - authenticated_user: true
          - device:
              type: any
  - from: http://localhost
    to: http://127.0.0.1:${welcomePort}
    name: Welcome page
    allow_public_unauthenticated_access: true
`,
      { mode: 0o600 },
    )
    const banner = [
      '',
      'Portcullis demo',
      `  open            http://localhost:${port}/`,
      `  team app        http://app.localhost:${port}/    (any signed-in user)`,
      `  admin console   http://admin.localhost:${port}/  (admins)`,
      `  device app      http://device.localhost:${port}/ (signed-in users, from a registered device)`,
      ...users.map((u, i) => `  sign in as      ${u.email}  password ${passwords[i]}  (${u.role})`),
      `  config          ${file}  (removed when the demo ends)`,
      '  Enter prints this again; Ctrl-C stops the demo.',
      '',
      '',
    ].join('\n')
    if (stop.signal !== undefined) return 0
    const reprint = (): void => void process.stdout.write(banner)
    // After the `listening` lines, so that the sign-in details are the last thing on screen.
    const code = await serve(file, {
      started: () => {
        // The `listening` lines first (the log writes asynchronously), then the details.
        flushLogs()
        reprint()
        process.stdin.on('data', reprint)
      },
    })
    process.stdin.off('data', reprint)
    process.stdin.pause()
    return code
  } finally {
    for (const s of servers) s.close()
    removeDir()
  }
}
