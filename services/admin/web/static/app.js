// Gatehouse web console: a client of the REST API (/api/v1), plain DOM.
// Everything the API says reaches the page through textContent, never
// innerHTML: a queued message's sender is the outside world's text.
'use strict';

const API = '/api/v1';
const $ = (id) => document.getElementById(id);

// The session: csrf lives in memory only; the cookie is HttpOnly.
const session = { csrf: '', name: '', role: '' };

// el builds an element; strings among children become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  }
  return e;
}

function clear(node) { node.replaceChildren(); return node; }

class APIError extends Error {
  constructor(status, body) {
    super((body && body.error) || ('HTTP ' + status));
    this.status = status;
    this.body = body || {};
  }
}

// api calls the REST API. body is JSON unless it is a string (YAML).
// A 401 anywhere but at login ends the session in the page too.
async function api(method, path, body) {
  const headers = {};
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') headers['X-CSRF-Token'] = session.csrf;
  if (typeof body === 'string') {
    headers['Content-Type'] = 'application/yaml';
    init.body = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(API + path, init);
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = { error: text.trim() }; }
  }
  if (res.status === 401 && path !== '/session') {
    showLogin('Your session ended; sign in again.');
    throw new APIError(401, data);
  }
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}

let flashTimer = 0;
function flash(msg, bad) {
  const f = $('flash');
  f.textContent = msg;
  f.className = bad ? 'bad' : 'good';
  f.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { f.hidden = true; }, bad ? 8000 : 3000);
}

// run wraps a UI action: errors go to the flash line (401s already did).
function run(fn) {
  return async (ev) => {
    if (ev && ev.preventDefault) ev.preventDefault();
    try { await fn(ev); } catch (e) {
      if (!(e instanceof APIError && e.status === 401)) flash(e.message, true);
    }
  };
}

// ---- formatting ----
const fmtTime = (s) => (s && !s.startsWith('0001-') ? new Date(s).toLocaleString() : '–');
function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  const u = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(n < 10 ? 1 : 0) + ' ' + u[i];
}
const fmtMS = (ns) => (ns / 1e6).toFixed(ns && Math.abs(ns) < 1e7 ? 2 : 0) + ' ms';
function fmtSecs(s) {
  s = Math.max(0, Math.round(s));
  if (s < 120) return s + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  return Math.round(s / 3600) + ' h';
}
const words = (s) => s.split(/[\s,]+/).filter(Boolean);

// ---- login ----
// The first page is usable once the login form or a page shows: a mark
// for the browser test's time-to-interactive.
let marked = false;
function markInteractive() {
  if (!marked && performance.mark) performance.mark('gatehouse-interactive');
  marked = true;
}

function showLogin(msg) {
  stopPage();
  session.csrf = '';
  $('app').hidden = true;
  $('login').hidden = false;
  const e = $('login-error');
  e.textContent = msg || '';
  e.hidden = !msg;
  $('login-secret').focus();
  markInteractive();
}

function showHost(st) {
  $('host').textContent = st.hostname + ' · ' + st.version + (st.ready ? '' : ' · starting');
}

function startSession(s) {
  session.csrf = s.csrf;
  session.name = s.name;
  session.role = s.role;
  document.body.classList.toggle('role-read', s.role !== 'admin');
  $('who').textContent = s.name + ' (' + s.role + ')';
  $('login').hidden = true;
  $('app').hidden = false;
  route();
  markInteractive();
  // The dashboard names the host itself; other first pages ask once.
  if (current !== 'dashboard') api('GET', '/status').then(showHost, () => {});
}

$('login-kind').addEventListener('change', () => {
  const tok = $('login-kind').value === 'token';
  $('login-label').textContent = tok ? 'API token' : 'Password';
  $('login-secret').autocomplete = tok ? 'off' : 'current-password';
});

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const secret = $('login-secret').value;
  const body = $('login-kind').value === 'token' ? { token: secret } : { user: 'admin', password: secret };
  $('login-submit').disabled = true;
  try {
    const s = await api('POST', '/session', body);
    $('login-secret').value = '';
    startSession(s);
  } catch (e) {
    showLogin(e.status === 401 || e.status === 403 ? 'Wrong password or token.' : e.message);
  } finally {
    $('login-submit').disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  try { await api('DELETE', '/session'); } catch (e) { /* gone already */ }
  showLogin('Signed out.');
});

// ---- routing: one page at a time, each with a start and a stop ----
const pages = {};
let current = null;

function stopPage() {
  if (current && pages[current].stop) pages[current].stop();
  current = null;
}

function route() {
  if ($('app').hidden) return;
  let name = location.hash.slice(1);
  if (!Object.hasOwn(pages, name)) name = 'dashboard';
  stopPage();
  for (const p of Object.keys(pages)) {
    $('page-' + p).hidden = p !== name;
    $('nav-' + p).classList.toggle('active', p === name);
  }
  current = name;
  pages[name].start();
}
window.addEventListener('hashchange', route);

// ---- dashboard ----
let dashTimer = 0;
pages.dashboard = {
  start() { dashboard(); dashTimer = setInterval(dashboard, 5000); },
  stop() { clearInterval(dashTimer); },
};

function detail(services, name) {
  const s = services.find((x) => x.name === name);
  return s && s.detail ? s.detail : null;
}

const dashboard = run(async () => {
  const st = await api('GET', '/status');
  const services = st.services || [];
  showHost(st);

  const tb = clear($('dash-services').tBodies[0]);
  for (const s of services) {
    tb.append(el('tr', { 'data-service': s.name },
      el('td', { text: s.name }),
      el('td', { class: 'phase-' + s.phase, text: s.phase }),
      el('td', { class: 'num', text: String(s.restarts) }),
      el('td', { text: s.status || s.last_exit || '' })));
  }

  const relay = detail(services, 'smtp'); // the relay's service
  if (relay && relay.queue) {
    const q = relay.queue;
    $('dash-queue').textContent = String(q.depth);
    $('dash-queue-detail').textContent = `${q.deferred} deferred, ${q.held} held, ${q.active} active`;
  } else {
    $('dash-queue').textContent = '–';
    $('dash-queue-detail').textContent = 'no relay';
  }
  const fetch = (relay && relay.fetch) || [];
  const failing = fetch.filter((a) => a.last_error);
  $('dash-fetch').textContent = fetch.length ? `${fetch.length - failing.length}/${fetch.length} ok` : '–';
  $('dash-fetch-detail').textContent = failing.length
    ? failing.map((a) => a.name + ': ' + a.last_error).join('; ')
    : (fetch.length ? 'no errors' : 'no accounts');

  const ntp = detail(services, 'ntp');
  $('dash-ntp').textContent = ntp ? (ntp.synced ? 'synced' : 'not synced') : '–';
  $('dash-ntp').className = 'big ' + (ntp && ntp.synced ? 'ok' : 'warn');
  $('dash-ntp-detail').textContent = ntp
    ? `offset ${fmtMS(ntp.offset_ns)}${ntp.server ? ' from ' + ntp.server : ''}${ntp.last_error ? ' · ' + ntp.last_error : ''}`
    : 'no NTP service';

  const fw = detail(services, 'firewall');
  if (fw && fw.drops) {
    $('dash-drops').textContent = String(fw.drops.in.packets + fw.drops.out.packets);
    $('dash-drops-detail').textContent =
      `in ${fw.drops.in.packets} (${fmtBytes(fw.drops.in.bytes)}), out ${fw.drops.out.packets} (${fmtBytes(fw.drops.out.bytes)})`;
  } else {
    $('dash-drops').textContent = '–';
    $('dash-drops-detail').textContent = 'no firewall';
  }

  const d = st.data || {};
  $('dash-disk').textContent = d.problem ? 'problem' : (d.mounted ? (d.read_only ? 'read-only' : 'ok') : 'not mounted');
  $('dash-disk').className = 'big ' + (d.problem || d.read_only ? 'warn' : 'ok');
  $('dash-disk-detail').textContent = [d.path, d.device, d.problem].filter(Boolean).join(' · ');

  const w = clear($('dash-warnings'));
  for (const x of st.warnings || []) w.append(el('li', { text: x }));
  if (st.emergency) w.append(el('li', { text: 'emergency: ' + st.emergency }));
  $('dash-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
});

// ---- queue ----
let queueList = [];
pages.queue = { start: run(loadQueue) };

async function loadQueue() {
  queueList = (await api('GET', '/queue')) || [];
  renderQueue();
}

function queueMatches(m, q) {
  if (!q) return true;
  const hay = [m.id, m.from].concat(m.rcpts || []).join('\n').toLowerCase();
  return hay.includes(q);
}

function queueAction(id, method, suffix, done) {
  return run(async () => {
    await api(method, '/queue/' + encodeURIComponent(id) + suffix);
    flash(done + ' ' + id);
    await loadQueue();
  });
}

// Delete asks twice by the button itself, not with a modal dialog.
function deleteButton(id) {
  const b = el('button', { type: 'button', 'data-test': 'delete', class: 'danger', text: 'Delete' });
  b.addEventListener('click', (ev) => {
    if (b.dataset.armed) return queueAction(id, 'DELETE', '', 'deleted')(ev);
    b.dataset.armed = '1';
    b.textContent = 'Really delete?';
    setTimeout(() => { delete b.dataset.armed; b.textContent = 'Delete'; }, 4000);
  });
  return b;
}

function renderQueue() {
  const q = $('queue-search').value.trim().toLowerCase();
  const tb = clear($('queue-table').tBodies[0]);
  let shown = 0;
  for (const m of queueList) {
    if (!queueMatches(m, q)) continue;
    shown++;
    const state = m.hold ? 'held' : m.active ? 'delivering' : (m.attempts ? `deferred (${m.attempts})` : 'queued');
    tb.append(el('tr', { 'data-id': m.id, class: m.hold ? 'held' : '' },
      el('td', { class: 'mono', text: m.id }),
      el('td', { text: fmtTime(m.arrived) }),
      el('td', { text: m.from || '<>' }),
      el('td', { text: (m.rcpts || []).join(', ') }),
      el('td', { class: 'num', text: fmtBytes(m.size) }),
      el('td', { 'data-test': 'state', text: state }),
      el('td', { class: 'err', text: m.last_error || '' }),
      el('td', { class: 'admin-only actions' },
        m.hold
          ? el('button', { type: 'button', 'data-test': 'release', text: 'Release', onclick: queueAction(m.id, 'POST', '/release', 'released') })
          : el('button', { type: 'button', 'data-test': 'hold', text: 'Hold', onclick: queueAction(m.id, 'POST', '/hold', 'held') }),
        deleteButton(m.id))));
  }
  $('queue-count').textContent = shown === queueList.length ? `${shown} messages` : `${shown} of ${queueList.length}`;
}

$('queue-search').addEventListener('input', renderQueue);
$('queue-refresh').addEventListener('click', run(loadQueue));
$('queue-flush').addEventListener('click', run(async () => {
  await api('POST', '/queue/flush');
  flash('queue flushed: every message is tried now');
  await loadQueue();
}));

// ---- logs ----
let logStream = null;
const maxLogLines = 2000;
pages.logs = {
  start: run(async () => {
    const sel = $('logs-service');
    const want = sel.value;
    const services = (await api('GET', '/services')) || [];
    clear(sel);
    for (const s of services) sel.append(el('option', { value: s.name, text: s.name }));
    if (want && services.some((s) => s.name === want)) sel.value = want;
    await loadLogs();
  }),
  stop: stopFollow,
};

function stopFollow() {
  if (logStream) logStream.close();
  logStream = null;
  $('logs-follow').setAttribute('aria-pressed', 'false');
  $('logs-follow').textContent = 'Follow';
}

async function loadLogs() {
  stopFollow();
  const name = $('logs-service').value;
  if (!name) return;
  const r = await api('GET', '/services/' + encodeURIComponent(name) + '/logs?lines=200');
  $('logs-out').textContent = (r.lines || []).join('\n');
  $('logs-out').scrollTop = $('logs-out').scrollHeight;
}

function appendLog(line) {
  const out = $('logs-out');
  const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.append((out.firstChild ? '\n' : '') + line);
  // Drop the oldest lines now and then rather than on every event.
  if (out.childNodes.length > maxLogLines * 2) {
    out.textContent = out.textContent.split('\n').slice(-maxLogLines).join('\n');
  }
  if (atEnd) out.scrollTop = out.scrollHeight;
}

$('logs-service').addEventListener('change', run(loadLogs));
$('logs-load').addEventListener('click', run(loadLogs));
$('logs-follow').addEventListener('click', () => {
  if (logStream) return stopFollow();
  const name = $('logs-service').value;
  if (!name) return;
  // The stream starts with what the ring keeps, so the page starts empty.
  $('logs-out').textContent = '';
  logStream = new EventSource(API + '/services/' + encodeURIComponent(name) + '/logs?follow=1');
  logStream.onmessage = (ev) => {
    try {
      const r = JSON.parse(ev.data);
      appendLog((r.time ? r.time.slice(11, 23) + ' ' : '') + r.line);
    } catch (e) { appendLog(ev.data); }
  };
  logStream.onerror = () => {
    // EventSource reconnects by itself (with Last-Event-ID); a closed one
    // means the server refused it, e.g. the session ended.
    if (logStream && logStream.readyState === EventSource.CLOSED) {
      stopFollow();
      api('GET', '/session').catch(() => {});
    }
  };
  $('logs-follow').setAttribute('aria-pressed', 'true');
  $('logs-follow').textContent = 'Stop following';
});

// ---- paths ----
let pathList = [];
pages.paths = { start: run(loadPaths) };

const pathKey = (p) => [p.direction, p.function, p.proto, p.ports].join('|');

async function loadPaths() {
  pathList = (await api('GET', '/paths')) || [];
  renderPaths(null);
}

function renderPaths(results) {
  const byPath = new Map();
  for (const r of results || []) {
    const k = pathKey(r.path);
    if (!byPath.has(k)) byPath.set(k, []);
    byPath.get(k).push(r);
  }
  const tb = clear($('paths-table').tBodies[0]);
  pathList.forEach((p, i) => {
    const verdict = el('td', { 'data-test': 'verdict' });
    const rs = byPath.get(pathKey(p)) || [];
    for (const r of rs) {
      verdict.append(el('div', { class: 'verdict v-' + r.outcome.replace(/\s+/g, '-') },
        el('b', { text: r.outcome }), ' ' + r.target,
        r.missing_opening ? el('div', { class: 'small', text: 'missing opening: ' + r.missing_opening })
          : r.detail ? el('div', { class: 'small', text: r.detail }) : null));
    }
    if (results && !rs.length) verdict.textContent = 'not checked';
    tb.append(el('tr', { 'data-path': String(i) },
      el('td', { text: p.function }),
      el('td', { text: p.direction }),
      el('td', { text: p.proto }),
      el('td', { text: p.ports }),
      el('td', { text: (p.peers || []).join(', ') || 'any' }),
      el('td', { text: p.description }),
      el('td', { text: p.required ? 'yes' : '' }),
      el('td', { text: p.origin }),
      verdict));
  });
}

$('paths-check').addEventListener('click', run(async () => {
  const b = $('paths-check');
  b.disabled = true;
  $('paths-summary').textContent = 'checking…';
  try {
    const rs = (await api('POST', '/paths/check')) || [];
    renderPaths(rs);
    const bad = rs.filter((r) => r.path.required && r.outcome !== 'ok' && r.outcome !== 'skipped');
    $('paths-summary').textContent = bad.length
      ? `${bad.length} required path${bad.length === 1 ? '' : 's'} failing` : 'every required path is open';
    $('paths-summary').className = bad.length ? 'warn' : 'ok';
  } finally {
    b.disabled = false;
  }
}));

// ---- firewall ----
pages.firewall = { start: run(loadFirewall) };

async function loadFirewall() {
  const [fw, bans] = await Promise.all([api('GET', '/firewall'), api('GET', '/firewall/bans')]);
  const s = fw.status || {};
  const dl = clear($('fw-status'));
  const kv = (k, v) => dl.append(el('dt', { text: k }), el('dd', { text: v }));
  kv('Backend', s.backend || '–');
  kv('Ruleset', s.ruleset || 'none');
  kv('Applied', fmtTime(s.applied) + (s.applies ? ` (${s.applies} times)` : ''));
  kv('Egress', s.egress || '–');
  if (s.drops) kv('Dropped', `in ${s.drops.in.packets} packets, out ${s.drops.out.packets} packets`);
  if (s.last_error) kv('Last error', s.last_error);
  if (s.drops_error) kv('Counters', s.drops_error);
  const list = (id, xs) => {
    const ul = clear($(id));
    for (const x of xs || []) ul.append(el('li', { text: x }));
    if (!ul.firstChild) ul.append(el('li', { class: 'muted', text: 'none' }));
  };
  list('fw-in', s.in);
  list('fw-out', s.out);
  $('fw-installed').textContent = fw.installed || '';
  const tb = clear($('fw-bans').tBodies[0]);
  for (const b of bans || []) {
    tb.append(el('tr', { 'data-address': b.address },
      el('td', { class: 'mono', text: b.address }),
      el('td', { text: b.set }),
      el('td', { text: fmtSecs(b.expires_in_s) }),
      el('td', { class: 'admin-only' }, el('button', {
        type: 'button', 'data-test': 'lift', text: 'Lift',
        onclick: run(async () => {
          await api('DELETE', '/firewall/bans/' + encodeURIComponent(b.address));
          flash('ban lifted: ' + b.address);
          await loadFirewall();
        }),
      }))));
  }
  if (!tb.firstChild) tb.append(el('tr', {}, el('td', { colspan: '4', class: 'muted', text: 'no bans' })));
}

// ---- config ----
// The editor keeps what was typed across page changes; "Reload running"
// and a rollback replace it with what runs.
let cfgLoaded = false;
let cfgValidateTimer = 0;
let cfgSeq = 0; // answers to older validations are dropped
let pendingTimer = 0;
let cfgBefore = null; // the running text before this page's apply: what a rollback brings back

pages.config = {
  start: run(async () => {
    if (!cfgLoaded) await loadConfig(true);
    else await checkPending();
  }),
  stop() { clearTimeout(cfgValidateTimer); },
};

// pendingOf is the rollback deadline of an apply not confirmed yet. The
// contract names it pending_until; the server answers confirm_by.
const pendingOf = (c) => (c && (c.confirm_by || c.pending_until)) || null;

async function loadConfig(replaceText) {
  const c = await api('GET', '/config');
  $('config-file').textContent = c.file || '';
  if (replaceText) {
    setEditor(c.yaml || '');
    $('config-note').hidden = true;
  }
  cfgLoaded = true;
  showPending(pendingOf(c));
  return c;
}

async function checkPending() {
  const c = await api('GET', '/config');
  showPending(pendingOf(c));
}

function setEditor(text) {
  $('config-text').value = text;
  markLines([]);
  setValid('', '');
  clear($('config-problems'));
  validateSoon();
}

// The gutter numbers the lines and marks those with a problem.
function markLines(problems) {
  const n = $('config-text').value.split('\n').length;
  const bad = new Set(problems.map((p) => p.line));
  const g = clear($('config-gutter'));
  for (let i = 1; i <= n; i++) {
    g.append(el('span', { class: bad.has(i) ? 'bad' : '', 'data-line': String(i), text: String(i) }), '\n');
  }
  g.scrollTop = $('config-text').scrollTop;
}

function setValid(state, text) {
  const v = $('config-valid');
  v.dataset.state = state;
  v.textContent = text;
}

const problemText = (p) => `${p.line || 0}:${p.column || 0} ${p.field ? p.field + ': ' : ''}${p.message}`;

function showProblems(problems, warnings) {
  const ul = clear($('config-problems'));
  for (const p of problems) ul.append(el('li', { class: 'bad', 'data-line': String(p.line || 0), text: problemText(p) }));
  for (const p of warnings) ul.append(el('li', { class: 'warn', text: 'warning: ' + problemText(p) }));
  markLines(problems);
}

// validate answers whether the text is a valid config; it shows the
// problems either way. send is POST /config/validate or PUT /config.
async function validate(method, path) {
  const seq = ++cfgSeq;
  const text = $('config-text').value;
  try {
    const r = await api(method, path, text);
    if (seq !== cfgSeq) return false;
    setValid('valid', 'valid');
    showProblems([], (r && r.warnings) || []);
    return true;
  } catch (e) {
    if (seq !== cfgSeq) return false;
    if (e.status === 400 && e.body.problems) {
      setValid('invalid', `${e.body.problems.length} problem${e.body.problems.length === 1 ? '' : 's'}`);
      showProblems(e.body.problems, []);
      return false;
    }
    throw e;
  }
}

function validateSoon() {
  clearTimeout(cfgValidateTimer);
  setValid('checking', 'checking…');
  cfgValidateTimer = setTimeout(run(() => validate('POST', '/config/validate')), 400);
}

$('config-text').addEventListener('input', () => {
  markLines([]);
  validateSoon();
});
$('config-text').addEventListener('scroll', () => { $('config-gutter').scrollTop = $('config-text').scrollTop; });
$('config-problems').addEventListener('click', (ev) => {
  const line = Number(ev.target.dataset.line);
  if (!line) return;
  const ta = $('config-text');
  const lines = ta.value.split('\n');
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  ta.focus();
  ta.setSelectionRange(start, start + (lines[line - 1] || '').length);
});

$('config-reload').addEventListener('click', run(() => loadConfig(true)));

$('config-apply').addEventListener('click', run(async () => {
  const within = Math.max(5, Math.round(Number($('config-within').value) || 120));
  clearTimeout(cfgValidateTimer);
  $('config-apply').disabled = true;
  try {
    if (!(await validate('PUT', '/config'))) {
      flash('not applied: the config has problems', true);
      return;
    }
    cfgBefore = (await api('GET', '/config')).yaml;
    const r = await api('POST', '/config/apply?confirm_within=' + within + 's');
    setState('pending', 'Applied. Confirm it, or it is rolled back.');
    showPending(pendingOf(r));
  } finally {
    $('config-apply').disabled = false;
  }
}));

$('config-confirm').addEventListener('click', run(async () => {
  await api('POST', '/config/confirm');
  showPending(null);
  setState('confirmed', 'Confirmed: the new configuration is kept.');
  await loadConfig(true);
}));

function setState(state, text) {
  const s = $('config-state');
  s.dataset.state = state;
  s.textContent = text;
}

// showPending counts down to the rollback deadline; at 0 it says what
// happens and waits for the running config to be the old one again.
function showPending(until) {
  clearInterval(pendingTimer);
  const box = $('config-pending');
  if (!until) { box.hidden = true; return; }
  const deadline = Date.parse(until);
  box.hidden = false;
  const tick = () => {
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left > 0) {
      $('config-countdown').textContent = `Rolled back in ${left} s unless confirmed.`;
      return;
    }
    clearInterval(pendingTimer);
    box.hidden = true;
    setState('rollingback', 'Not confirmed: the previous configuration is being rolled back.');
    awaitRollback();
  };
  tick();
  pendingTimer = setInterval(tick, 250);
}

async function awaitRollback() {
  for (let i = 0; i < 60; i++) {
    try {
      const c = await api('GET', '/config');
      const until = pendingOf(c);
      // Done when nothing is pending and the old text is back (when known).
      if (until ? Date.parse(until) > Date.now() : (cfgBefore === null || c.yaml === cfgBefore)) {
        setEditor(c.yaml || '');
        if (until) return showPending(until); // a new apply came in meanwhile
        setState('rolledback', 'Rolled back: the previous configuration runs again.');
        return;
      }
    } catch (e) {
      if (e.status === 401) return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  setState('unknown', 'The rollback has not shown up yet; reload the running config.');
}

// ---- setup ----
pages.setup = { start() {} };

// setupAnswers is the one place that knows the answers' JSON shape.
function setupAnswers() {
  const v = (id) => $(id).value.trim();
  const dhcp = $('setup-dhcp').checked;
  return {
    hostname: v('setup-hostname'),
    interface: v('setup-interface'),
    dhcp,
    address: dhcp ? '' : v('setup-address'),
    gateway: dhcp ? '' : v('setup-gateway'),
    dns: words(v('setup-dns')),
    ntp: words(v('setup-ntp')),
    domains: words(v('setup-domains')),
    internal_server: v('setup-internal'),
    trusted_networks: words(v('setup-trusted')),
    ssh_key: v('setup-sshkey'),
  };
}

function setupStaticFields() {
  const dhcp = $('setup-dhcp').checked;
  $('setup-address').disabled = dhcp;
  $('setup-gateway').disabled = dhcp;
}
$('setup-dhcp').addEventListener('change', setupStaticFields);
$('setup-static').addEventListener('change', setupStaticFields);
setupStaticFields();

$('setup-form').addEventListener('submit', run(async () => {
  const ul = clear($('setup-problems'));
  let r;
  try {
    r = await api('POST', '/setup', setupAnswers());
  } catch (e) {
    if (e.status === 400 && e.body.problems) {
      for (const p of e.body.problems) ul.append(el('li', { class: 'bad', text: p.message ? problemText(p) : String(p) }));
      return;
    }
    throw e;
  }
  cfgLoaded = true;
  location.hash = '#config';
  setEditor(r.yaml || '');
  const note = $('config-note');
  note.textContent = 'This configuration comes from the setup answers and is not applied yet: review it, then Apply.';
  note.hidden = false;
}));

// ---- start: a session cookie may still be good ----
(async () => {
  try {
    startSession(await api('GET', '/session'));
  } catch (e) {
    showLogin('');
  }
})();
