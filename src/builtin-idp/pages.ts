/**
 * Pages of the built-in identity provider: sign-in, one-time code, sign-out confirmation, signed
 * out, errors. Same look and rules as `src/ui/pages.ts` (whose layout is not exported): every
 * dynamic value escaped, no scripts at all, the stylesheet allowed by a per-page nonce.
 *
 * `form-action` must list more than 'self': browsers apply it to every redirect that follows a
 * form submission, and a sign-in form's POST ends, two redirects later, at the application's
 * callback on another origin. The caller passes those origins (the configured redirect URIs').
 */
import { randomBytes } from 'node:crypto'

import { escapeHtml } from '../ui/pages.js'
import type { RenderedPage } from '../ui/pages.js'

export type { RenderedPage }

const STYLE = `
:root{color-scheme:light dark;--fg:#1f2937;--muted:#6b7280;--bg:#fff;--card:#f9fafb;--line:#e5e7eb;--accent:#4338ca;--bad:#b91c1c}
@media (prefers-color-scheme:dark){:root{--fg:#e5e7eb;--muted:#9ca3af;--bg:#111827;--card:#1f2937;--line:#374151;--accent:#a5b4fc;--bad:#fca5a5}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:26rem;margin:0 auto;padding:2rem 1rem}h1{font-size:1.5rem;margin:0 0 1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0}
label{display:block;margin:.75rem 0 .25rem}input{font:inherit;width:100%;padding:.5rem .625rem;border:1px solid var(--line);border-radius:.375rem;background:var(--bg);color:var(--fg)}
.muted{color:var(--muted);font-size:.875rem}.error{color:var(--bad);font-weight:600}.actions{display:flex;gap:.75rem;align-items:center;flex-wrap:wrap;margin-top:1rem}
button,.button{font:inherit;background:var(--accent);color:var(--bg);border:0;border-radius:.375rem;padding:.5rem 1rem;cursor:pointer;text-decoration:none;display:inline-block}
button.secondary{background:transparent;color:var(--accent);border:1px solid var(--line)}a{color:var(--accent)}
footer{color:var(--muted);font-size:.8rem;margin-top:2rem}
`

function layout(title: string, body: string, formActions: readonly string[] = []): RenderedPage {
  const nonce = randomBytes(16).toString('base64')
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style nonce="${nonce}">${STYLE}</style></head>
<body><main>${body}<footer>Portcullis</footer></main></body></html>
`
  const sources = ["'self'", ...new Set(formActions.filter(isCspSource))].join(' ')
  return {
    html,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; style-src 'nonce-${nonce}'; img-src 'self' data:; form-action ${sources}; frame-ancestors 'none'; base-uri 'none'`,
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    },
  }
}

/** Only `scheme://host[:port]` origins go into the policy (nothing that could add a directive). */
function isCspSource(origin: string): boolean {
  return /^https?:\/\/[A-Za-z0-9.[\]:-]+$/.test(origin) || /^(\*\.)?[A-Za-z0-9.-]+:\*$/.test(origin)
}

function alert(message: string | undefined): string {
  return message === undefined ? '' : `<p id="login-error" class="error" role="alert">${escapeHtml(message)}</p>`
}

interface LoginPageData {
  /** Where the form posts. */
  readonly action: string
  /** Pre-filled email (`login_hint`, or what was typed before a failure). */
  readonly email: string
  /** The application being signed in to, when it is known. */
  readonly clientLabel?: string
  readonly error?: string
  readonly cancelUrl?: string
}

export function loginPage(d: LoginPageData, formActions: readonly string[]): RenderedPage {
  return layout(
    'Sign in',
    `<h1>Sign in</h1>${d.clientLabel !== undefined ? `<p class="muted">to continue to ${escapeHtml(d.clientLabel)}</p>` : ''}
<div class="card">${alert(d.error)}
<form id="login" method="post" action="${escapeHtml(d.action)}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required value="${escapeHtml(d.email)}"${d.email === '' ? ' autofocus' : ''}>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required${d.email !== '' ? ' autofocus' : ''}>
<div class="actions"><button type="submit">Sign in</button>${cancel(d.cancelUrl)}</div>
</form></div>`,
    formActions,
  )
}

interface TotpPageData {
  readonly action: string
  readonly email: string
  readonly error?: string
  readonly cancelUrl?: string
}

export function totpPage(d: TotpPageData, formActions: readonly string[]): RenderedPage {
  return layout(
    'Enter your code',
    `<h1>Enter your code</h1><p class="muted">Signing in as ${escapeHtml(d.email)}. Open your authenticator app and enter the 6-digit code for this account.</p>
<div class="card">${alert(d.error)}
<form id="totp" method="post" action="${escapeHtml(d.action)}">
<label for="code">Code</label><input id="code" name="code" type="text" inputmode="numeric" pattern="[0-9 ]{6,7}" maxlength="7" autocomplete="one-time-code" required autofocus>
<div class="actions"><button type="submit">Verify</button>${cancel(d.cancelUrl)}</div>
</form></div>`,
    formActions,
  )
}

function cancel(url: string | undefined): string {
  return url === undefined ? '' : `<a href="${escapeHtml(url)}">Cancel</a>`
}

/**
 * The RP-initiated logout confirmation, shown when an application signs the user out and the
 * browser still has a session here. `providerForm` is oidc-provider's own
 * `<form id="op.logoutForm">` (its action and anti-forgery token, built by the provider, not from
 * request input); the buttons submit it from outside. "Sign out" posts `logout=yes`, which ends
 * this provider's session (single sign-on) and signs every client out over back-channel logout;
 * "Stay signed in" posts without it, which only ends the asking application's grant, so the next
 * sign-in to it goes straight through. The page says that in a person's words.
 */
export function logoutConfirmPage(providerForm: string, clientLabel: string | undefined, formActions: readonly string[]): RenderedPage {
  const app = clientLabel !== undefined ? escapeHtml(clientLabel) : 'the application'
  return layout(
    'Sign out here too?',
    `<h1>Sign out here too?</h1>
<p id="logout-intro">You are signing out of ${app}. You are also signed in here, on the sign-in page ${app} uses. Do you want to end that sign-in too?</p>${providerForm}
<div class="card">
<p id="logout-explain"><strong>Sign out</strong> ends your sign-in here as well. The next time you open ${app}, or another application that signs in here, you will be asked for your password again. Choose this on a shared or public computer.</p>
<p id="stay-explain"><strong>Stay signed in</strong> keeps your sign-in here. The next time you open ${app}, you will be signed straight back in without typing your password.</p>
</div>
<div class="actions"><button id="logout" type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Sign out</button><button id="stay" class="secondary" type="submit" form="op.logoutForm">Stay signed in</button></div>`,
    formActions,
  )
}

/**
 * Where the browser lands after the logout confirmation when the application gave no address to
 * return to. `keptSignIn`: the person chose "Stay signed in" (oidc-provider then passes the
 * application's client id along), so only that application's sign-in ended.
 */
export function signedOutPage(keptSignIn?: { readonly clientLabel: string }): RenderedPage {
  if (keptSignIn !== undefined) {
    const app = escapeHtml(keptSignIn.clientLabel)
    return layout(
      'Signed out',
      `<h1 id="signed-out">You are signed out of ${app}</h1><p>You are still signed in here, so the next time you open ${app} you will be signed straight back in. You can close this window.</p>`,
    )
  }
  return layout(
    'Signed out',
    `<h1 id="signed-out">You have been signed out</h1><p>The next time you open an application that signs in here, you will be asked for your password again. You can close this window.</p>`,
  )
}

export function idpErrorPage(status: number, title: string, message: string): RenderedPage {
  return layout(
    title,
    `<h1 id="error">${escapeHtml(title)}</h1><div class="card"><p id="error-description">${escapeHtml(message)}</p></div><p class="muted">Error ${status}</p>`,
  )
}
