/**
 * Server-rendered pages of the authenticate service and the route hosts: one layout, one small
 * stylesheet, readable on a phone. Every dynamic value goes through `escapeHtml`. Pages carry a
 * strict Content-Security-Policy: no script may run (but the WebAuthn page's own, by nonce), and
 * the stylesheet is allowed by a per-page nonce rather than `unsafe-inline`. Tokens are never rendered: the user page shows
 * identity and claims only.
 */
import { randomBytes } from 'node:crypto'

/**
 * A page's one script (the WebAuthn ceremony): fixed code written in this repository, allowed by
 * the page's nonce, and the values it needs as JSON data, never spliced into the code.
 */
export interface PageScript {
  readonly code: string
  readonly data: unknown
}

export interface RenderedPage {
  readonly html: string
  /** Headers every page needs: CSP with this page's nonce, no caching, no framing. */
  readonly headers: Readonly<Record<string, string>>
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1f2937;--muted:#6b7280;--bg:#fff;--card:#f9fafb;--line:#e5e7eb;--accent:#4338ca}
@media (prefers-color-scheme:dark){:root{--fg:#e5e7eb;--muted:#9ca3af;--bg:#111827;--card:#1f2937;--line:#374151;--accent:#a5b4fc}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:44rem;margin:0 auto;padding:2rem 1rem}h1{font-size:1.5rem;margin:0 0 1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}
dl{display:grid;grid-template-columns:minmax(7rem,max-content) 1fr;gap:.25rem 1rem;margin:0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
code{font-family:ui-monospace,monospace;font-size:.9em}.muted{color:var(--muted);font-size:.875rem}
button,.button{font:inherit;background:var(--accent);color:var(--bg);border:0;border-radius:.375rem;padding:.5rem 1rem;cursor:pointer;text-decoration:none;display:inline-block}
footer{color:var(--muted);font-size:.8rem;margin-top:2rem}pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem;margin:0}
.apps{list-style:none;padding:0;margin:0}.app{display:flex;gap:1rem;align-items:flex-start}.app img{width:2.5rem;height:2.5rem;object-fit:contain;flex:none}
.app h2{font-size:1.125rem;margin:0}.app p{margin:.25rem 0 0;overflow-wrap:anywhere}a{color:var(--accent)}
`

/** Origins a CSP source list may name: a scheme, a host and maybe a port, nothing that ends the directive. */
const CSP_ORIGIN = /^https?:\/\/[^\s;,']+$/

/**
 * `formActions`: origins a form on the page may post to besides its own, including where the
 * answer redirects (browsers check every hop): the sign-out button goes through the authenticate
 * host and the provider's logout page.
 */
export function layout(title: string, body: string, formActions: readonly string[] = [], imageOrigins: readonly string[] = [], script?: PageScript): RenderedPage {
  const nonce = randomBytes(16).toString('base64')
  // Data for a script goes in a JSON block the browser never runs; `<` is escaped so no value can end it.
  const scriptTags =
    script === undefined
      ? ''
      : `<script type="application/json" id="page-data">${JSON.stringify(script.data).replace(/</g, '\\u003c')}</script><script nonce="${nonce}">${script.code}</script>`
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style nonce="${nonce}">${STYLE}</style></head>
<body><main>${body}<footer>Portcullis</footer></main>${scriptTags}</body></html>
`
  return {
    html,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; style-src 'nonce-${nonce}';${script === undefined ? '' : ` script-src 'nonce-${nonce}'; connect-src 'self';`} img-src ${["'self'", 'data:', ...new Set(imageOrigins.filter((o) => CSP_ORIGIN.test(o)))].join(' ')}; form-action ${["'self'", ...formActions.filter((o) => CSP_ORIGIN.test(o))].join(' ')}; frame-ancestors 'none'; base-uri 'none'`,
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    },
  }
}

export function list(entries: readonly (readonly [string, string])[]): string {
  return `<dl>${entries.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('')}</dl>`
}

/** Dates on pages: one unambiguous form (the server does not know the reader's time zone). */
const DATE_FORMAT = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeStyle: 'medium', timeZone: 'UTC' })

/** A readable date and time (`7 December 2026 at 00:15:24 UTC`). */
export function readableDate(date: Date): string {
  return Number.isNaN(date.getTime()) ? 'unknown' : `${DATE_FORMAT.format(date)} UTC`
}

/** JWT/OIDC claims that hold seconds since the epoch (RFC 7519 4.1, OpenID Connect Core 2 and 5.1). */
const EPOCH_CLAIMS = new Set(['exp', 'iat', 'nbf', 'auth_time', 'updated_at'])
/** An ISO 8601 / RFC 3339 timestamp with a time and a zone, as some providers put in custom claims. */
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i
/** Epoch seconds a person could mean: 1970 to 2100. */
const MAX_EPOCH_S = 4_102_444_800

function claimText(name: string, value: unknown): string {
  if (EPOCH_CLAIMS.has(name) && typeof value === 'number' && Number.isFinite(value) && value >= 0 && value < MAX_EPOCH_S) {
    return readableDate(new Date(value * 1000))
  }
  if (typeof value === 'string' && ISO_TIMESTAMP.test(value) && !Number.isNaN(Date.parse(value))) return readableDate(new Date(value))
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ')
  return typeof value === 'string' ? value : JSON.stringify(value)
}

export interface UserPageData {
  readonly name: string
  readonly email: string
  readonly userId: string
  readonly groups: readonly string[]
  readonly claims: Readonly<Record<string, unknown>>
  readonly issuedAt: Date
  readonly expiresAt: Date
  /** Where the sign-out button posts (a signed URL). */
  readonly signOutAction: string
  readonly csrfToken: string
  /** Origins the sign-out redirects pass through (authenticate, provider). */
  readonly formActions?: readonly string[]
  /** Where the routes portal of this host is, when it is served. */
  readonly routesUrl?: string
  /** The user's registered devices (docs/devices.md), and where a removal posts. */
  readonly devices?: {
    readonly list: readonly UserPageDevice[]
    readonly removeAction: string
    readonly csrfToken: string
  }
}

export interface UserPageDevice {
  readonly id: string
  readonly typeName: string
  readonly createdAt: Date
  readonly lastUsedAt: Date | undefined
  readonly approved: boolean
  readonly pendingApproval: boolean
  /** Its signature counter went backwards (a copied key): it counts for nothing. */
  readonly suspended?: boolean
}

function devicesCard(d: NonNullable<UserPageData['devices']>): string {
  if (d.list.length === 0) return '<h2>Devices</h2><div class="card"><p class="muted">No registered devices.</p></div>'
  const rows = d.list.map(
    (dev) => `<li class="card">${list([
      ['Type', dev.typeName],
      ['Registered', readableDate(dev.createdAt)],
      ['Last used', dev.lastUsedAt ? readableDate(dev.lastUsedAt) : 'never'],
      ['Approved', dev.approved ? 'yes' : dev.pendingApproval ? 'no (waiting for approval)' : 'no'],
      ...(dev.suspended === true ? [['Suspended', 'yes: its signature counter went backwards, as when a key is copied; remove it and register again'] as const] : []),
      ['Credential ID', dev.id],
    ])}<form method="post" action="${escapeHtml(d.removeAction)}"><input type="hidden" name="csrf" value="${escapeHtml(d.csrfToken)}"><input type="hidden" name="id" value="${escapeHtml(dev.id)}"><button type="submit">Remove this device</button></form></li>`,
  )
  return `<h2>Devices</h2><ul class="apps">${rows.join('')}</ul>`
}

/** Claims never shown, even when a provider puts them in the ID token or UserInfo. */
const HIDDEN_CLAIMS = new Set(['access_token', 'refresh_token', 'id_token', 'at_hash', 'c_hash', 'nonce'])

export function userPage(d: UserPageData): RenderedPage {
  const claims = Object.entries(d.claims)
    .filter(([k]) => !HIDDEN_CLAIMS.has(k))
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => [k, claimText(k, v)] as const)
  return layout(
    'Your session',
    `<h1>Signed in as ${escapeHtml(d.name || d.email)}</h1>
<div class="card">${list([
      ['Email', d.email],
      ['User ID', d.userId],
      ['Groups', d.groups.join(', ') || '(none)'],
      ['Signed in', readableDate(d.issuedAt)],
      ['Session ends', readableDate(d.expiresAt)],
    ])}</div>
${d.routesUrl !== undefined ? `<p><a href="${escapeHtml(d.routesUrl)}">Your apps</a>: the routes you may open.</p>` : ''}
<h2>Claims</h2><div class="card">${claims.length > 0 ? list(claims) : '<p class="muted">No claims.</p>'}</div>
${d.devices ? devicesCard(d.devices) : ''}
<form method="post" action="${escapeHtml(d.signOutAction)}"><input type="hidden" name="csrf" value="${escapeHtml(d.csrfToken)}"><button type="submit">Sign out</button></form>`,
    d.formActions,
  )
}

export interface RoutesPageEntry {
  /** The route's name, else its `from`. */
  readonly title: string
  readonly description: string
  /** `from` as configured. */
  readonly from: string
  /** Shown when it is an http(s) URL, a path on this host or a `data:image/` URL. */
  readonly logoUrl: string
  /** Where the browser opens the route; none for wildcard hosts and tunnels. */
  readonly url?: string | undefined
  /** tcp/udp routes: the client command. */
  readonly connectCommand?: string | undefined
}

export interface RoutesPageData {
  /** Who is signed in (name, email or user id). */
  readonly user: string
  readonly routes: readonly RoutesPageEntry[]
  /** The user page of this host. */
  readonly userPageUrl: string
}

/** A logo address the page may load, and the origin the CSP must allow for it ('' = this host or data:). */
function logoSource(url: string): { src: string; origin: string } | undefined {
  if (/^data:image\/(png|gif|jpeg|webp|svg\+xml)[;,]/i.test(url)) return { src: url, origin: '' }
  if (url.startsWith('/') && !url.startsWith('//') && !url.startsWith('/\\')) return { src: url, origin: '' }
  if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) return undefined
  const origin = new URL(url).origin
  return CSP_ORIGIN.test(origin) ? { src: url, origin } : undefined
}

/** The routes portal: a card per route the user may open (Pomerium docs: On every route host `/.pomerium/routes`). */
export function routesPage(d: RoutesPageData): RenderedPage {
  const origins: string[] = []
  const cards = d.routes.map((r) => {
    const logo = r.logoUrl !== '' ? logoSource(r.logoUrl) : undefined
    if (logo && logo.origin !== '') origins.push(logo.origin)
    const img = logo ? `<img src="${escapeHtml(logo.src)}" alt="" width="40" height="40">` : ''
    const title = r.url !== undefined ? `<a href="${escapeHtml(r.url)}">${escapeHtml(r.title)}</a>` : escapeHtml(r.title)
    const description = r.description !== '' ? `<p>${escapeHtml(r.description)}</p>` : ''
    const command = r.connectCommand !== undefined ? `<p>Connect with <code>${escapeHtml(r.connectCommand)}</code></p>` : ''
    return `<li class="card app">${img}<div><h2>${title}</h2>${description}${command}${r.title !== r.from ? `<p class="muted"><code>${escapeHtml(r.from)}</code></p>` : ''}</div></li>`
  })
  const body =
    cards.length > 0
      ? `<ul class="apps">${cards.join('')}</ul>`
      : `<div class="card"><p>There are no apps you may open.</p><p class="muted">Ask your administrator if you expected to see some here.</p></div>`
  return layout(
    'Your apps',
    `<h1>Your apps</h1><p class="muted">Signed in as ${escapeHtml(d.user)}. <a href="${escapeHtml(d.userPageUrl)}">Your session</a></p>${body}`,
    [],
    origins,
  )
}

export interface SignedOutPageData {
  /**
   * The identity provider's own sign-out (its end_session_endpoint), when it has one: signing
   * out of Portcullis does not necessarily end the session there.
   */
  readonly providerSignOutUrl?: string | undefined
}

/**
 * After sign-out. It says only what is certain: Portcullis' session has ended. Whether the
 * provider's session has too depends on how the person answered the provider's own prompt,
 * which Portcullis cannot see; while it lasts, the next app opened signs straight back in.
 */
export function signedOutPage(d: SignedOutPageData = {}): RenderedPage {
  const provider =
    d.providerSignOutUrl !== undefined
      ? `<p><a class="button" href="${escapeHtml(d.providerSignOutUrl)}">Sign out of the identity provider too</a></p>`
      : '<p>To end that session as well, sign out at your identity provider.</p>'
  return layout(
    'Signed out',
    `<h1>You are signed out of Portcullis</h1><div class="card"><p>Your Portcullis session has ended: the apps behind this Portcullis need a new sign-in.</p>
<p>You may still be signed in at your identity provider. If you are, the next app you open signs you straight back in without asking for your password.</p>${provider}</div>`,
  )
}

export function signOutConfirmPage(action: string, csrfToken: string, formActions: readonly string[] = []): RenderedPage {
  return layout(
    'Sign out?',
    `<h1>Sign out?</h1><p>You will need to sign in again on every app behind this Portcullis.</p>
<form method="post" action="${escapeHtml(action)}"><input type="hidden" name="csrf" value="${escapeHtml(csrfToken)}"><button type="submit">Sign out</button></form>`,
    formActions,
  )
}

export interface ErrorPageData {
  readonly status: number
  readonly title: string
  /** What happened, in words the reader can act on; provider text is escaped like everything else. */
  readonly message: string
  readonly requestId: string
  readonly retryUrl?: string
  /** Denials: the rules that decided, in plain words. */
  readonly reasons?: readonly string[]
  /** Denials: who is signed in (email or user id). */
  readonly user?: string
  /** Denials: the route that refused (its name, else its `from`). */
  readonly route?: string
  /** Denials: where signing out (to try another account) starts. */
  readonly signOutUrl?: string
  /** `show_error_details`: the full evaluation, pre-formatted. */
  readonly details?: string
}

export function errorPage(d: ErrorPageData): RenderedPage {
  const facts: [string, string][] = []
  if (d.route !== undefined) facts.push(['App', d.route])
  if (d.user !== undefined) facts.push(['Signed in as', d.user])
  const reasons = d.reasons && d.reasons.length > 0 ? `<p>Why:</p><ul>${d.reasons.map((r) => `<li>${escapeHtml(r)}</li>`).join('')}</ul>` : ''
  return layout(
    `${d.status} ${d.title}`,
    `<h1>${escapeHtml(`${d.status} ${d.title}`)}</h1><div class="card"><p>${escapeHtml(d.message)}</p>${reasons}${facts.length > 0 ? list(facts) : ''}${
      d.retryUrl !== undefined ? `<p><a class="button" href="${escapeHtml(d.retryUrl)}">Try again</a></p>` : ''
    }${d.signOutUrl !== undefined ? `<p><a href="${escapeHtml(d.signOutUrl)}">Sign out</a> to use another account.</p>` : ''}</div>${
      d.details !== undefined ? `<h2>Details</h2><div class="card"><pre>${escapeHtml(d.details)}</pre></div>` : ''
    }<p class="muted">Request ID: <code>${escapeHtml(d.requestId)}</code></p>`,
  )
}
