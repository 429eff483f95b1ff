/**
 * HTML for the dev IdP. The login form uses the same field names as Dex's password.html
 * (`login`, `password`, a form posting back to the page's own URL) so one scripted login or
 * one browser test drives both.
 */

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0).toString()};`);
}

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;background:#2f6fdd;color:#fff;border:0;border-radius:4px}
.error{background:#fde8e8;color:#9b1c1c;padding:.6rem;border-radius:4px;margin-top:1rem}
.note{color:#666;font-size:.8rem;margin-top:1.5rem}`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>
`;
}

export interface LoginPageOptions {
  /** Where the form posts (the page's own URL, including `?req=`). */
  postURL: string;
  clientName: string;
  /** Previously typed login, kept after a failed attempt. */
  login?: string;
  invalid?: boolean;
}

/** The email + password form. */
export function loginPage(opts: LoginPageOptions): string {
  const login = opts.login ?? '';
  return page(
    'Log in - Portico dev IdP',
    `<h1>Log in to ${escapeHtml(opts.clientName)}</h1>
<form method="post" action="${escapeHtml(opts.postURL)}">
  <label for="login">Email Address</label>
  <input required id="login" name="login" type="text" autocomplete="username" value="${escapeHtml(login)}"${login ? '' : ' autofocus'}>
  <label for="password">Password</label>
  <input required id="password" name="password" type="password" autocomplete="current-password"${opts.invalid ? ' autofocus' : ''}>
  ${opts.invalid ? '<div id="login-error" class="error">Invalid Email Address and password.</div>' : ''}
  <button id="submit-login" type="submit">Login</button>
</form>
<p class="note">Portico development identity provider. Not for production use.</p>`,
  );
}

/** An error the user sees instead of being redirected (bad client, bad redirect_uri, expired request). */
export function errorPage(title: string, message: string): string {
  return page(
    `${title} - Portico dev IdP`,
    `<h1>${escapeHtml(title)}</h1><p id="error-message">${escapeHtml(message)}</p>
<p class="note">Portico development identity provider.</p>`,
  );
}
