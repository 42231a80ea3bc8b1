// Switchboard console: boot, login and logout, and the hash router. Pages live in one module each.
import { app, $, api } from './ui.js';
import { overviewPage } from './overview.js';
import { tailPage } from './tail.js';
import { destinationsPage } from './destinations.js';
import { eventPage } from './story.js';
import { failedPage } from './deliveries.js';
import { configPage } from './config.js';

function showLogin(message) {
  stopPage();
  app.csrf = null;
  $('shell').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('login-token').focus();
}

function showShell() {
  $('login').hidden = true;
  $('shell').hidden = false;
  route();
}

async function login(event) {
  event.preventDefault();
  const input = $('login-token');
  try {
    const answer = await api('POST', '/console/login', { token: input.value });
    input.value = '';
    app.csrf = answer.csrf;
    showShell();
  } catch (e) {
    input.value = '';
    showLogin(e.status === 401 ? 'Wrong admin token: the login was refused.' : `Login failed: ${e.message}`);
  }
}

async function logout() {
  try { await api('POST', '/console/logout'); } catch (_) { /* gone already */ }
  showLogin('Logged out.');
}

async function boot() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', () => { if (app.csrf) route(); });
  try {
    const session = await api('GET', '/console/session');
    app.csrf = session.csrf;
    showShell();
  } catch (_) {
    showLogin();
  }
}

// ---------- router ----------

const pages = {
  overview: overviewPage,
  tail: tailPage,
  destinations: destinationsPage,
  events: eventPage,
  failed: failedPage,
  channels: (root) => configPage('channels', root),
  wabas: (root) => configPage('wabas', root),
  partners: (root) => configPage('partners', root),
};

function stopPage() {
  app.routeId += 1;
  app.timers.forEach(clearTimeout);
  app.timers = [];
  if (app.source) { app.source.close(); app.source = null; }
}

function route() {
  stopPage();
  const [name, ...args] = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const page = pages[name] ? name : 'overview';
  for (const link of document.querySelectorAll('.nav a')) {
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const root = $('page');
  root.replaceChildren();
  pages[page](root, ...args.map(decodeURIComponent));
  const title = $('page-title');
  if (title && document.activeElement === document.body) title.focus();
}

app.unauthorized = () => showLogin();

boot();
