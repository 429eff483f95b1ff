/**
 * productpage's HTML, as pure functions of the data (so they can be tested without sockets).
 * Layout follows Istio's productpage.html: navbar with sign in/out, the book summary, a
 * details column and a reviews column with stars. Every dynamic value goes through `esc`.
 */
import type { Review } from './reviews.ts';

export const DETAILS_UNAVAILABLE = 'Sorry, product details are currently unavailable for this book.';
export const REVIEWS_UNAVAILABLE = 'Sorry, product reviews are currently unavailable for this book.';
export const RATINGS_API_UNAVAILABLE = 'Sorry, product ratings are currently unavailable for this book.';

export interface Product {
  id: number;
  title: string;
  descriptionHtml: string;
}

/** Istio's single product; `descriptionHtml` is trusted static markup. */
export const PRODUCTS: readonly Product[] = Object.freeze([
  Object.freeze({
    id: 0,
    title: 'The Comedy of Errors',
    descriptionHtml:
      '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare\'s</b> early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play.',
  }),
]);

export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, user: string | undefined, body: string, logoutAction?: string): string {
  const signOut = logoutAction
    ? `<form method="post" action="${esc(logoutAction)}" class="signout"><button type="submit" id="signout">sign out</button></form>`
    : '<a href="/logout">sign out</a>';
  const account = user
    ? `<div class="navbar-text navbar-right">Signed in as <b id="user">${esc(user)}</b> &nbsp; ${signOut}</div>`
    : '<p class="navbar-text navbar-right"><a href="/login">Sign in</a></p>';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${esc(title)}</title>
<link rel="stylesheet" href="/static/css/style.css">
</head>
<body>
<nav class="navbar"><a class="navbar-brand" href="/">BookInfo Sample</a>${account}</nav>
<div class="container">
${body}
</div>
</body>
</html>
`;
}

export interface ProductPageData {
  user: string | undefined;
  /**
   * Where "sign out" posts when the user came from the gateway's identity header (the
   * authservice's `<prefix>/logout`); absent = Bookinfo's own `/logout` link.
   */
  logoutAction?: string;
  product: Product;
  details: { ok: true; data: Record<string, unknown> } | { ok: false };
  reviews: { ok: true; podname: string; reviews: Review[] } | { ok: false };
}

function detailsHtml(d: ProductPageData['details']): string {
  if (!d.ok) {
    return `<h4 class="text-center text-primary">Error fetching product details!</h4>\n<p class="error">${esc(DETAILS_UNAVAILABLE)}</p>`;
  }
  const rows: [string, string][] = [
    ['Type', 'type'],
    ['Pages', 'pages'],
    ['Publisher', 'publisher'],
    ['Language', 'language'],
    ['ISBN-10', 'ISBN-10'],
    ['ISBN-13', 'ISBN-13'],
  ];
  const items = rows
    .filter(([, key]) => d.data[key] !== undefined)
    .map(([label, key]) => `<tr><th>${esc(label)}:</th><td>${esc(d.data[key])}</td></tr>`)
    .join('\n');
  return `<h4 class="text-center text-primary">Book Details</h4>\n<table class="details">\n${items}\n</table>`;
}

function starsHtml(rating: Review['rating']): string {
  if (!rating) return '';
  if ('error' in rating) return `<p class="rating-error"><i>${esc(rating.error)}</i></p>`;
  const full = Math.max(0, Math.min(5, Math.trunc(rating.stars)));
  const color = /^[a-z]{1,20}$/.test(rating.color) ? rating.color : 'black';
  const glyphs =
    '<span class="glyphicon glyphicon-star">&#9733;</span>'.repeat(full) +
    '<span class="glyphicon glyphicon-star-empty">&#9734;</span>'.repeat(5 - full);
  return `<font color="${color}" class="stars" data-stars="${full}">${glyphs}</font>`;
}

function reviewsHtml(r: ProductPageData['reviews']): string {
  if (!r.ok) {
    return `<h4 class="text-center text-primary">Error fetching product reviews!</h4>\n<p class="error">${esc(REVIEWS_UNAVAILABLE)}</p>`;
  }
  const quotes = r.reviews
    .map(
      (review) =>
        `<blockquote>\n<p>${esc(review.text)}</p>\n<small>${esc(review.reviewer)}</small>\n${starsHtml(review.rating)}\n</blockquote>`,
    )
    .join('\n');
  return `<h4 class="text-center text-primary">Book Reviews</h4>\n${quotes}\n<dl><dt>Reviews served by:</dt><dd><u>${esc(r.podname)}</u></dd></dl>`;
}

export function renderProductPage(data: ProductPageData): string {
  const body = `<div class="row"><h3 class="text-center text-primary">${esc(data.product.title)}</h3>
<p>Summary: ${data.product.descriptionHtml}</p></div>
<div class="row">
<div class="col details-col">
${detailsHtml(data.details)}
</div>
<div class="col reviews-col">
${reviewsHtml(data.reviews)}
</div>
</div>`;
  return page('Simple Bookstore App', data.user, body, data.logoutAction);
}

export function renderIndex(user: string | undefined): string {
  return page(
    'Simple Bookstore App',
    user,
    `<h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>
<p>productpage → details, productpage → reviews (v1 | v2 | v3) → ratings</p>
<p><a href="/productpage">Open the product page</a></p>`,
  );
}

export function renderLogin(user: string | undefined, error?: string): string {
  const err = error ? `<p class="error">${esc(error)}</p>` : '';
  return page(
    'Simple Bookstore App',
    user,
    `<h3>Sign in</h3>
${err}<form method="post" action="/login">
<label>User name <input type="text" name="username" autocomplete="username" required maxlength="64"></label>
<label>Password <input type="password" name="passwd" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
<p>Bookinfo's own demo login accepts any name (try <code>jason</code>); the password is ignored.</p>`,
  );
}

export const STYLE_CSS = `body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
.navbar { display: flex; justify-content: space-between; align-items: center; background: #222; color: #eee; padding: .6em 1em; }
.navbar a { color: #9cf; }
.navbar-brand { font-weight: bold; text-decoration: none; }
.navbar form.signout { display: inline; }
.container { max-width: 60em; margin: 1em auto; padding: 0 1em; }
.row { display: flex; flex-wrap: wrap; gap: 2em; }
.row > h3, .row > p { flex-basis: 100%; }
.col { flex: 1 1 20em; }
.text-primary { color: #337ab7; }
.text-center { text-align: center; }
.details th { text-align: left; padding-right: 1em; }
blockquote { border-left: 4px solid #ddd; margin: 0 0 1em; padding: .5em 1em; }
.error, .rating-error { color: #a94442; }
label { display: block; margin: .5em 0; }
`;
