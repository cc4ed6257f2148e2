// The warden dashboard's page. Plain browser JavaScript, served by the host under a CSP that allows
// only its own files. Everything a plugin can influence (names, versions, reasons, details) is put
// in the page with textContent or as a dataset value, never parsed as markup.
(function () {
  'use strict';
  var SEVERITIES = ['info', 'notice', 'warning', 'critical'];
  var MAX_AUDIT = 5000;
  var MAX_ROWS = 500;
  var state = { usage: null, audit: [], selected: null, charts: null, tab: 'plugins' };

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    var tr = document.createElement('tr');
    cells.forEach(function (c) { tr.appendChild(c instanceof Node ? c : el('td', c)); });
    return tr;
  }
  function mib(b) { return b === undefined || b === null ? '–' : (b / 1048576).toFixed(1) + ' MiB'; }
  function dur(s) {
    if (s === undefined || s === null) return '–';
    if (s < 60) return Math.round(s) + ' s';
    if (s < 3600) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function num(v, digits) { return v === undefined || v === null ? '–' : Number(v).toFixed(digits); }
  function getJSON(url) {
    return fetch(url, { credentials: 'same-origin' }).then(function (r) {
      if (!r.ok) throw new Error(url + ': ' + r.status);
      return r.json();
    });
  }

  // ---------------------------------------------------------------- overview and plugins

  function renderUsage(u) {
    state.usage = u;
    var by = u.host.byStatus || {};
    $('card-active').textContent = String(by.active || 0);
    $('card-failed').textContent = String(by.failed || 0);
    $('card-quarantined').textContent = String(by.quarantined || 0);
    $('card-sandboxes').textContent = String(u.host.sandboxes);
    $('card-violations').textContent = String(u.host.violations24h);
    $('card-critical').textContent = String(u.host.critical24h);
    var body = $('plugins').tBodies[0];
    var rows = u.plugins.map(function (p) {
      var tr = row([
        el('td', p.name),
        el('td', p.status, 'st-' + p.status),
        el('td', p.version || '–'),
        el('td', p.publisher || '–'),
        el('td', p.trust || '–'),
        el('td', p.permissions.length ? p.permissions.join(', ') : 'none'),
        el('td', p.pid === undefined ? '–' : p.pid),
        el('td', dur(p.uptimeSeconds)),
        el('td', p.restarts),
        el('td', p.cpu.cores === undefined ? num(p.cpu.seconds, 2) + ' s' : num(p.cpu.cores, 3) + ' cores'),
        el('td', mib(p.memory.bytes) + ' / ' + mib(p.memory.limitBytes)),
        el('td', p.calls.total + (p.calls.errors ? ' (' + p.calls.errors + ' failed)' : '')),
        el('td', p.calls.p99Ms === undefined ? '–' : num(p.calls.p99Ms, 1) + ' ms'),
        el('td', p.lastViolation ? p.lastViolation.kind + ': ' + p.lastViolation.message : '–'),
        el('td', p.pressure.join(', '), p.pressure.length ? 'warn' : ''),
      ]);
      tr.dataset.plugin = p.name;
      if (p.name === state.selected) tr.className = 'selected';
      tr.addEventListener('click', function () { select(p.name); });
      return tr;
    });
    body.replaceChildren.apply(body, rows);
    var pick = $('f-plugin');
    var known = Array.prototype.map.call(pick.options, function (o) { return o.value; });
    u.plugins.forEach(function (p) {
      if (known.indexOf(p.name) < 0) {
        var o = el('option', p.name);
        o.value = p.name;
        pick.appendChild(o);
      }
    });
    if (state.selected === null && u.plugins.length > 0) select(u.plugins[0].name);
    else if (state.selected !== null) loadHistory();
  }

  // ---------------------------------------------------------------- charts

  function chart(target, title, series) {
    var box = $(target);
    box.replaceChildren();
    var opts = {
      title: title,
      width: Math.max(360, box.clientWidth || 420),
      height: 200,
      series: [{}].concat(series.map(function (s) { return { label: s[0], stroke: s[1], width: 1.5, spanGaps: false, points: { show: true, size: 4 } }; })),
      axes: [{}, { size: 60 }],
    };
    return new uPlot(opts, [[]].concat(series.map(function () { return []; })), box);
  }

  function select(name) {
    state.selected = name;
    $('chart-title').textContent = 'history of ' + name;
    Array.prototype.forEach.call($('plugins').tBodies[0].rows, function (tr) {
      tr.className = tr.dataset.plugin === name ? 'selected' : '';
    });
    if (state.charts === null) {
      state.charts = {
        cpu: chart('chart-cpu', 'CPU (cores)', [['cpu', '#0969da']]),
        memory: chart('chart-memory', 'Memory (MiB) against its limit', [['memory', '#1a7f37'], ['limit', '#cf222e']]),
        calls: chart('chart-calls', 'Calls per second', [['calls/s', '#8250df'], ['errors/s', '#cf222e']]),
        latency: chart('chart-latency', 'Hook latency (ms)', [['p50', '#0969da'], ['p99', '#9a6700']]),
      };
    }
    loadHistory();
  }

  function loadHistory() {
    var name = state.selected;
    if (name === null) return;
    getJSON('/api/history?plugin=' + encodeURIComponent(name)).then(function (h) {
      if (state.selected !== name) return;
      var t = h.times.map(function (x) { return x / 1000; });
      var s = h.series;
      var toMiB = function (a) { return a.map(function (v) { return v === null ? null : v / 1048576; }); };
      state.charts.cpu.setData([t, s.cpu]);
      state.charts.memory.setData([t, toMiB(s.memory), toMiB(s.memoryLimit)]);
      state.charts.calls.setData([t, s.calls, s.errors]);
      state.charts.latency.setData([t, s.p50, s.p99]);
      $('charts').dataset.points = String(t.length);
      $('charts').dataset.lastMemory = String(s.memory.length ? s.memory[s.memory.length - 1] : '');
    }).catch(function () { /* the next push retries */ });
  }

  // ---------------------------------------------------------------- audit and network

  function filters() {
    return {
      severity: SEVERITIES.indexOf($('f-severity').value),
      plugin: $('f-plugin').value,
      event: $('f-event').value.trim(),
      since: Number($('f-since').value),
    };
  }

  function matches(e, f, now) {
    if (SEVERITIES.indexOf(e.severity) < f.severity) return false;
    if (f.plugin !== '' && e.plugin !== f.plugin) return false;
    if (f.event !== '' && e.event !== f.event) return false;
    if (f.since > 0 && Date.parse(e.time) < now - f.since) return false;
    return true;
  }

  function renderAudit() {
    var f = filters();
    var now = Date.now();
    var list = state.audit.filter(function (e) { return matches(e, f, now); }).slice(-MAX_ROWS).reverse();
    var body = $('audit').tBodies[0];
    body.replaceChildren.apply(body, list.map(function (e) {
      var tr = row([el('td', e.time), el('td', e.severity, 'sev-' + e.severity), el('td', e.event), el('td', e.plugin || '–'), el('td', e.reason || '')]);
      tr.dataset.seq = String(e.seq);
      tr.dataset.event = String(e.event);
      return tr;
    }));
    var net = state.audit.filter(function (e) { return e.event === 'network'; }).slice(-MAX_ROWS).reverse();
    var nbody = $('network').tBodies[0];
    nbody.replaceChildren.apply(nbody, net.map(function (e) {
      var d = e.details || {};
      return row([el('td', e.time), el('td', e.plugin || '–'), el('td', d.decision || d.type || '–'), el('td', e.reason || '')]);
    }));
  }

  function addAudit(e) {
    state.audit.push(e);
    if (state.audit.length > MAX_AUDIT) state.audit.splice(0, state.audit.length - MAX_AUDIT);
    renderAudit();
  }

  // ---------------------------------------------------------------- wiring

  Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (b) {
    b.addEventListener('click', function () {
      state.tab = b.dataset.tab;
      Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (x) { x.className = x === b ? 'active' : ''; });
      ['plugins', 'audit', 'network'].forEach(function (t) { $('tab-' + t).className = t === state.tab ? 'tab' : 'tab hidden'; });
    });
  });
  ['f-severity', 'f-plugin', 'f-since'].forEach(function (id) { $(id).addEventListener('change', renderAudit); });
  $('f-event').addEventListener('input', renderAudit);
  $('audit-filters').addEventListener('submit', function (ev) { ev.preventDefault(); });

  // The recent audit lines, merged by sequence number with what the stream already brought. Run at
  // every (re)connect too: a page that fell behind is cut off by the server and misses lines.
  function loadAudit() {
    getJSON('/api/audit?limit=' + MAX_AUDIT).then(function (events) {
      var seen = {};
      state.audit.forEach(function (e) { seen[e.seq] = true; });
      state.audit = state.audit.concat(events.filter(function (e) { return !seen[e.seq]; }));
      state.audit.sort(function (a, b) { return a.seq - b.seq; });
      if (state.audit.length > MAX_AUDIT) state.audit.splice(0, state.audit.length - MAX_AUDIT);
      renderAudit();
    });
  }

  var source = new EventSource('/api/events');
  source.addEventListener('open', function () { $('conn').textContent = 'live'; loadAudit(); });
  source.addEventListener('error', function () { $('conn').textContent = 'reconnecting…'; });
  source.addEventListener('usage', function (m) { renderUsage(JSON.parse(m.data)); });
  source.addEventListener('audit', function (m) { addAudit(JSON.parse(m.data)); });
})();
