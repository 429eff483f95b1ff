/**
 * The few pages a person may see: small, self-contained HTML with no scripts and no stack traces.
 */

export interface PageOptions {
  status: number;
  title: string;
  message: string;
  action?: { href: string; label: string };
  /** Stable error code shown in small print, to quote to an operator. */
  code?: string;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

/** Content-Security-Policy for our pages: no scripts, no external loads, no framing. */
export const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export function renderPage(p: PageOptions): string {
  const action = p.action ? `<p><a class="button" href="${escapeHtml(p.action.href)}">${escapeHtml(p.action.label)}</a></p>` : '';
  const code = p.code ? `<p class="code">${p.status} · ${escapeHtml(p.code)}</p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(p.title)}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:#f5f6f8;color:#1d2330;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:10px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem 2.5rem;max-width:32rem}
h1{font-size:1.35rem;margin:0 0 .75rem}p{line-height:1.5}
.button{display:inline-block;background:#2f5bd3;color:#fff;text-decoration:none;padding:.55rem 1.1rem;border-radius:6px}
.code{color:#6b7280;font-size:.8rem;margin-top:1.5rem}
</style></head>
<body><main><h1>${escapeHtml(p.title)}</h1><p>${escapeHtml(p.message)}</p>${action}${code}</main></body></html>
`;
}
