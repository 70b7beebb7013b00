// hopper's dashboard: keeps the server-rendered page current from the
// event stream (ui/events) and makes the buttons call hopper's HTTP API.
// Data only ever reaches the page as text (textContent, Text nodes,
// attributes), never as HTML. No libraries, no build step.
'use strict';
(() => {
  const csrfMeta = document.querySelector('meta[name="csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : '';
  const SVG = 'http://www.w3.org/2000/svg';
  const live = new Map();    // running job ID → {tokens, text}
  const pending = new Set(); // "action id" of requests under way
  const drawn = new Map();   // part name → the JSON it was last drawn from
  let snap = null;
  let lastSnapAt = 0;

  // h builds an element; strings among kids become Text nodes.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, String(v));
    }
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  function s(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const k of kids) e.append(k instanceof Node ? k : String(k));
    return e;
  }

  // span writes a duration in milliseconds as the server does (internal/human: Fine).
  function span(ms) {
    if (ms < 1000) return Math.floor(ms) + 'ms';
    if (ms < 60e3) return Math.floor(ms / 1e3) + 's';
    if (ms < 3600e3) return Math.floor(ms / 60e3) + 'm';
    if (ms < 48 * 3600e3) return Math.floor(ms / 3600e3) + 'h';
    return Math.floor(ms / 86400e3) + 'd';
  }

  function ago(now, iso) {
    if (!iso) return '';
    const d = Date.parse(now) - Date.parse(iso);
    if (d > -1000 && d < 1000) return 'just now';
    return d > 0 ? span(d) + ' ago' : 'in ' + span(-d);
  }

  function time(now, iso) {
    return iso ? h('time', { datetime: iso }, ago(now, iso)) : '';
  }

  function label(action) {
    return action.charAt(0).toUpperCase() + action.slice(1);
  }

  function actions(j) {
    return (j.actions || []).map((a) => h('button', {
      type: 'button', class: 'act act-' + a, 'data-action': a, 'data-id': j.id,
      disabled: pending.has(a + ' ' + j.id) ? 'disabled' : null,
    }, label(a)));
  }

  const empty = (text) => h('p', { class: 'empty' }, text);
  const note = (text) => h('p', { class: 'note' }, text);

  // Each part renders one [data-part] element of the page, as the
  // template of the same name does.
  const parts = {
    states(d) {
      return [
        h('ul', { class: 'tiles' }, d.states.map((x) => h('li', { class: 'tile st-' + x.state, 'data-state': x.state },
          h('b', null, x.count), ' ', h('span', null, x.state)))),
        d.ready ? null : note('Still reading the spool: counts are growing.'),
      ];
    },

    problems(d) {
      return (d.problems || []).map((p) => h('p', { class: 'warn' }, p));
    },

    targets(d) {
      const t = d.targets;
      if (!t.published) {
        return h('p', { class: 'empty' }, 'No runner has published its targets: start ', h('code', null, 'hopper serve'), '.');
      }
      return [
        t.served ? null : h('p', { class: 'warn' }, 'No runner serves this spool now; its targets as it last saw them' +
          (t.updated_at ? ' at ' + new Date(t.updated_at).toLocaleString() : '') + '.'),
        t.problem ? h('p', { class: 'warn' }, t.problem) : null,
        h('div', { class: 'cards' }, t.list.map((x) => h('article', { class: 'card target h-' + x.health, 'data-target': x.name },
          h('h3', null, h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'name' }, x.name), ' ',
            h('span', { class: 'health' }, x.health)),
          h('p', { class: 'url' }, x.url + (x.version ? ' · Ollama ' + x.version : '')),
          x.error ? h('p', { class: 'err' }, x.error) : null,
          h('dl', null,
            h('dt', null, 'Slots'), h('dd', null, h('meter', { min: 0, max: x.slots, value: x.in_flight }), ' ',
              h('span', { class: 'slots' }, x.in_flight + ' of ' + x.slots + ' in use')),
            h('dt', null, 'Running'), h('dd', { class: 'loadkey' }, x.load_key || '—'),
            h('dt', null, 'Resident'), h('dd', { class: 'resident' }, x.resident && x.resident.length ? x.resident.join(', ') : 'none'),
            x.missing && x.missing.length ? [h('dt', null, 'Missing'), h('dd', null, x.missing.join(', '))] : null,
            h('dt', null, 'Finished'), h('dd', null, x.done + ' done · ' + x.failed + ' failed · ' + x.loads + ' loads'))))),
      ];
    },

    running(d) {
      const r = d.running;
      if (!r.jobs.length) return empty('Nothing is running.');
      return [
        h('ul', { class: 'jobs live-jobs' }, r.jobs.map((j) => {
          const l = live.get(j.id);
          return h('li', { class: 'job', 'data-job': j.id, 'data-state': j.state },
            h('div', { class: 'head' }, h('code', { class: 'id' }, j.id), ' ', h('span', { class: 'model' }, j.model), ' ',
              h('span', { class: 'state st-' + j.state }, j.state),
              j.target ? [' ', h('span', { class: 'target' }, 'on ' + j.target)] : null,
              j.started_at ? [' ', h('span', { class: 'since' }, 'for ' + span(Math.max(0, Date.parse(d.now) - Date.parse(j.started_at))))] : null,
              ' ', h('span', { class: 'tokens', 'data-tokens': j.id }, Math.max(j.tokens || 0, l ? l.tokens : 0) + ' tokens'), ' ',
              actions(j)),
            h('pre', { class: 'out', 'data-out': j.id }, l ? l.text : ''));
        })),
        r.total > r.jobs.length ? note('Showing ' + r.jobs.length + ' of ' + r.total + '.') : null,
      ];
    },

    models(d) {
      if (!d.models.length) return empty('The queue is empty.');
      return h('div', { class: 'scroll' }, h('table', { class: 'models' },
        h('thead', null, h('tr', null, ['Model', 'Running', 'Queued', 'Queued by priority'].map((x) => h('th', null, x)))),
        h('tbody', null, d.models.map((m) => h('tr', { 'data-model': m.model },
          h('td', { class: 'model' }, m.model), h('td', null, m.running), h('td', null, m.queued),
          h('td', null, m.priorities.map((p, i) => [i ? ' · ' : '', h('span', { class: 'prio' }, p.priority), ': ' + p.count])))))));
    },

    queued: (d) => jobs('queued', d.queued, d.now),
    held: (d) => jobs('held', d.held, d.now),
    deferred: (d) => jobs('deferred', d.deferred, d.now),
    failures: (d) => jobs('failures', d.failures, d.now),

    batches(d) {
      const b = d.batches;
      if (!b.list.length) return empty('No batches.');
      return [
        h('ul', { class: 'batches' }, b.list.map((x) => h('li', { 'data-batch': x.id },
          h('code', { class: 'id' }, x.id), ' ', h('span', { class: 'state' }, x.state), ' ',
          h('progress', { max: 100, value: x.percent }, x.percent + '%'), ' ',
          h('span', { class: 'progress' }, x.done + ' done · ' + x.failed + ' failed of ' + x.total),
          x.active ? [' ', h('button', { type: 'button', class: 'act act-cancel', 'data-action': 'cancel-batch', 'data-id': x.id,
            disabled: pending.has('cancel-batch ' + x.id) ? 'disabled' : null }, 'Cancel')] : null))),
        b.total > b.list.length ? note('The ' + b.list.length + ' newest of ' + b.total + '.') : null,
      ];
    },
  };

  const emptyText = {
    queued: 'No job is queued.', held: 'No job is held.', deferred: 'No job waits to retry.', failures: 'No job failed.',
  };

  function jobs(kind, list, now) {
    if (!list.jobs.length) return empty(emptyText[kind]);
    const head = [kind === 'queued' ? '#' : null, 'Job', 'Model'].concat(
      kind === 'failures' ? ['Target', 'Failed', 'Error'] : kind === 'deferred' ? ['Attempts', 'Retries'] : ['Priority', 'Submitted'], ['']);
    const row = (j) => h('tr', { class: 'job', 'data-job': j.id, 'data-state': j.state },
      kind === 'queued' ? h('td', { class: 'pos' }, j.position === undefined ? '' : j.position + 1) : null,
      h('td', null, h('code', { class: 'id' }, j.id)), h('td', { class: 'model' }, j.model),
      kind === 'failures' ? [h('td', { class: 'target' }, j.target || ''), h('td', { class: 'when' }, time(now, j.finished_at)),
        h('td', { class: 'error' }, j.error ? [h('span', { class: 'kind' }, j.error.kind), ' ', h('span', { class: 'msg' }, j.error.message)] : '')]
        : kind === 'deferred' ? [h('td', { class: 'attempts' }, j.attempts), h('td', { class: 'when' }, time(now, j.not_before))]
          : [h('td', { class: 'prio' }, j.priority), h('td', { class: 'when' }, time(now, j.submitted_at))],
      h('td', { class: 'actions' }, actions(j)));
    let more = null;
    if (list.total > list.jobs.length) {
      more = note(kind === 'queued'
        ? 'The next ' + list.jobs.length + ' of ' + list.total + ' queued, in run order (# is its place in the queue, as in hopper ls).'
        : 'The ' + list.jobs.length + ' newest of ' + list.total + '.');
    }
    return [h('div', { class: 'scroll' }, h('table', { class: 'jobs t-' + kind },
      h('thead', null, h('tr', null, head.filter((x) => x !== null).map((x) => h('th', null, x)))),
      h('tbody', null, list.jobs.map(row)))), more];
  }

  // Charts: inline SVG, 600×160 user units, one bar per minute.
  const W = 600, H = 160, L = 40, R = 6, T = 10, B = 20;

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function minuteOf(c, i) {
    return new Date(Date.parse(c.start) + i * c.step_seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  // chart draws series into svg: bars (stacked in order) and lines. fmt
  // writes a value for the axis and the tooltips.
  function chart(svg, c, series, fmt) {
    const n = c.done.length;
    const bw = (W - L - R) / n;
    let top = 0;
    for (let i = 0; i < n; i++) {
      let stack = 0;
      for (const x of series) {
        const v = x.values[i] || 0;
        if (x.kind === 'bar') stack += v; else top = Math.max(top, v);
      }
      top = Math.max(top, stack);
    }
    const ymax = niceMax(top);
    const y = (v) => T + (H - T - B) * (1 - v / ymax);
    const kids = [
      s('line', { x1: L, x2: W - R, y1: y(0), y2: y(0), class: 'axis' }),
      s('line', { x1: L, x2: W - R, y1: y(ymax), y2: y(ymax), class: 'grid' }),
      s('text', { x: L - 4, y: y(ymax) + 4, 'text-anchor': 'end', class: 'tick' }, fmt(ymax)),
      s('text', { x: L - 4, y: y(0) + 4, 'text-anchor': 'end', class: 'tick' }, '0'),
      s('text', { x: L, y: H - 4, class: 'tick' }, '−60m'),
      s('text', { x: L + (W - L - R) / 2, y: H - 4, 'text-anchor': 'middle', class: 'tick' }, '−30m'),
      s('text', { x: W - R, y: H - 4, 'text-anchor': 'end', class: 'tick' }, 'now'),
    ];
    for (let i = 0; i < n; i++) {
      let base = 0;
      const tip = [];
      for (const x of series) {
        const v = x.values[i];
        if (v === null || v === undefined) continue;
        tip.push(x.name + ' ' + fmt(v));
        if (x.kind !== 'bar' || !v) continue;
        const r = s('rect', { x: L + i * bw + 0.5, width: Math.max(bw - 1, 1), y: y(base + v), height: y(base) - y(base + v), class: x.cls });
        r.append(s('title', null, minuteOf(c, i) + ': ' + tip.join(', ')));
        kids.push(r);
        base += v;
      }
    }
    for (const x of series.filter((x) => x.kind === 'line')) {
      let d = '';
      x.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const px = L + i * bw + bw / 2;
        d += (d ? ' L' : 'M') + px.toFixed(1) + ' ' + y(v).toFixed(1);
        const dot = s('circle', { cx: px.toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: x.cls });
        dot.append(s('title', null, minuteOf(c, i) + ': ' + x.name + ' ' + fmt(v)));
        kids.push(dot);
      });
      if (d) kids.push(s('path', { d, class: x.cls + ' line' }));
    }
    if (top === 0) {
      kids.push(s('text', { x: (L + W - R) / 2, y: H / 2, 'text-anchor': 'middle', class: 'none' }, 'nothing in the last hour'));
    }
    svg.replaceChildren(...kids);
  }

  function charts(d) {
    const c = d.charts;
    const key = JSON.stringify(c).replace(/"start":"[^"]*"/, '');
    if (drawn.get('charts') === key) return;
    drawn.set('charts', key);
    const fig = (id) => document.getElementById(id);
    const count = (v) => String(Math.round(v));
    const secs = (v) => span(v * 1000);
    chart(fig('chart-throughput').querySelector('svg'), c, [
      { name: 'done', values: c.done, kind: 'bar', cls: 'c-done' },
      { name: 'failed', values: c.failed, kind: 'bar', cls: 'c-failed' }], count);
    fig('chart-throughput').querySelector('figcaption').textContent =
      'Jobs finished per minute: ' + c.total_done + ' done, ' + c.total_failed + ' failed';
    chart(fig('chart-wait').querySelector('svg'), c, [
      { name: 'longest', values: c.wait_max, kind: 'bar', cls: 'c-waitmax' },
      { name: 'median', values: c.wait_p50, kind: 'line', cls: 'c-wait' }], secs);
    fig('chart-wait').querySelector('figcaption').textContent = 'Wait in the queue (median per minute)' +
      (c.wait_p50_all === null || c.wait_p50_all === undefined ? '' : ': median ' + secs(c.wait_p50_all));
    chart(fig('chart-loads').querySelector('svg'), c, [{ name: 'loads', values: c.loads, kind: 'bar', cls: 'c-loads' }], count);
    fig('chart-loads').querySelector('figcaption').textContent = 'Model loads per minute: ' + c.total_loads;
  }

  function setPaused(paused) {
    const pill = document.getElementById('spool-state');
    pill.textContent = paused ? 'paused' : 'running';
    pill.className = 'pill ' + (paused ? 'paused' : 'running');
    const b = document.getElementById('pause');
    if (!pending.has('pause ') && !pending.has('resume ')) {
      b.dataset.action = paused ? 'resume' : 'pause';
      b.textContent = paused ? 'Resume' : 'Pause';
      b.disabled = false;
    }
  }

  // update draws a snapshot: each part whose data changed, and every
  // time (relative to the server's clock) anew.
  function update(d) {
    snap = d;
    lastSnapAt = Date.now();
    setPaused(d.paused);
    for (const [name, render] of Object.entries(parts)) {
      const el = document.querySelector('[data-part="' + name + '"]');
      if (!el) continue;
      const key = JSON.stringify(partData(name, d)) + '|' + pendingKey();
      if (drawn.get(name) === key) continue;
      drawn.set(name, key);
      const out = render(d);
      el.replaceChildren(...[out].flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false));
    }
    for (const t of document.querySelectorAll('main time[datetime]')) t.textContent = ago(d.now, t.getAttribute('datetime'));
    for (const j of d.running.jobs) {
      if (!j.started_at) continue;
      const li = document.querySelector('[data-part="running"] [data-job="' + CSS.escape(j.id) + '"] .since');
      if (li) li.textContent = 'for ' + span(Math.max(0, Date.parse(d.now) - Date.parse(j.started_at)));
    }
    charts(d);
    const up = document.getElementById('updated');
    up.setAttribute('datetime', d.now);
    up.textContent = new Date(d.now).toLocaleTimeString();
    for (const id of live.keys()) {
      if (!d.running.jobs.some((j) => j.id === id)) live.delete(id);
    }
  }

  // partData is what a part is drawn from, without the clock, so a part
  // is drawn again only when it would change.
  function partData(name, d) {
    switch (name) {
      case 'states': return [d.states, d.ready];
      case 'running': return d.running.jobs.map((j) => [j.id, j.state, j.model, j.target, j.actions]).concat([d.running.total]);
      case 'models': case 'queued': case 'held': case 'deferred': case 'failures': case 'batches': case 'problems':
        return d[name];
      case 'targets': return d.targets;
    }
    return d;
  }

  function pendingKey() { return Array.from(pending).sort().join(','); }

  // tokens shows the live output of running jobs.
  function tokens(d) {
    for (const j of d.jobs) {
      live.set(j.id, { tokens: j.tokens, text: j.text });
      const n = document.querySelector('[data-tokens="' + CSS.escape(j.id) + '"]');
      if (n) n.textContent = j.tokens + ' tokens';
      const out = document.querySelector('[data-out="' + CSS.escape(j.id) + '"]');
      if (out) {
        out.textContent = j.text;
        out.scrollTop = out.scrollHeight;
      }
    }
  }

  function flash(text, kind) {
    const f = document.getElementById('flash');
    f.textContent = text;
    f.className = kind;
  }

  // The API calls behind the buttons (paths relative to the page, so a
  // proxy may serve hopper under a prefix).
  const calls = {
    cancel: (id) => ['DELETE', 'jobs/' + encodeURIComponent(id)],
    retry: (id) => ['POST', 'jobs/' + encodeURIComponent(id) + '/retry'],
    hold: (id) => ['POST', 'jobs/' + encodeURIComponent(id) + '/hold'],
    release: (id) => ['POST', 'jobs/' + encodeURIComponent(id) + '/release'],
    pause: () => ['POST', 'pause'],
    resume: () => ['POST', 'resume'],
    'cancel-batch': (id) => ['POST', 'v1/batches/' + encodeURIComponent(id) + '/cancel'],
  };

  function done(action, id, status) {
    switch (action) {
      case 'cancel': return status === 202 ? 'Asked ' + id + ' to stop: it lands in failed/ as canceled.' : 'Canceled ' + id + ': it is in failed/ now.';
      case 'retry': return 'Queued ' + id + ' again.';
      case 'hold': return 'Held ' + id + ': it will not run until released.';
      case 'release': return 'Released ' + id + ': it is queued again.';
      case 'pause': return 'Paused: the runner starts nothing new; running jobs finish.';
      case 'resume': return 'Resumed: the runner takes jobs again.';
      case 'cancel-batch': return 'Canceling batch ' + id + '.';
    }
    return 'Done.';
  }

  function errorText(resp, body) {
    if (body && typeof body.error === 'string') return body.error;
    if (body && body.error && body.error.message) return body.error.message;
    if (resp.status === 401) return 'not signed in: open this page with ?token=… again';
    return resp.status + ' ' + resp.statusText;
  }

  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-action]');
    if (!b || b.disabled) return;
    const action = b.dataset.action;
    const id = b.dataset.id || '';
    const call = calls[action];
    if (!call) return;
    const [method, path] = call(id);
    const key = action + ' ' + id;
    pending.add(key);
    b.disabled = true;
    const row = b.closest('[data-job],[data-batch]');
    if (row) row.classList.add('pending');
    flash((label(action === 'cancel-batch' ? 'cancel' : action) + ' ' + id).trim() + '…', 'busy');
    let ok = false;
    try {
      const headers = { Accept: 'application/json' };
      if (csrf) headers['X-Hopper-CSRF'] = csrf;
      const resp = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store' });
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      if (!resp.ok) throw new Error(errorText(resp, body));
      ok = true;
      flash(done(action, id, resp.status), 'ok');
      if (body && typeof body.paused === 'boolean') {
        pending.delete(key);
        setPaused(body.paused);
      }
    } catch (e) {
      flash('Could not ' + (action === 'cancel-batch' ? 'cancel batch' : action) + (id ? ' ' + id : '') + ': ' + e.message, 'err');
    } finally {
      pending.delete(key);
      if (!ok) {
        b.disabled = false;
        if (row) row.classList.remove('pending');
      }
      // The stream brings the change; fetch it if the stream is quiet.
      const asked = Date.now();
      setTimeout(() => { if (lastSnapAt < asked) refresh(); }, 1500);
    }
  });

  async function refresh() {
    try {
      const resp = await fetch('ui/data.json', { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' });
      if (resp.status === 401) {
        flash('Signed out: open this page with ?token=… again.', 'err');
        return false;
      }
      if (resp.ok) update(await resp.json());
      return resp.ok;
    } catch (e) {
      return false;
    }
  }

  function setLive(on) {
    const l = document.getElementById('live');
    l.textContent = on ? 'live' : 'not live';
    l.className = 'live ' + (on ? 'on' : 'off');
  }

  // connect opens the event stream; when it fails for good (the browser
  // gives up after an error status), the page polls and tries again.
  function connect() {
    if (!window.EventSource) {
      setInterval(refresh, 5000);
      refresh();
      return;
    }
    const es = new EventSource('ui/events');
    es.addEventListener('open', () => setLive(true));
    es.addEventListener('snapshot', (e) => update(JSON.parse(e.data)));
    es.addEventListener('tokens', (e) => tokens(JSON.parse(e.data)));
    es.addEventListener('error', () => {
      setLive(false);
      if (es.readyState === EventSource.CLOSED) {
        refresh().then(() => setTimeout(connect, 10000));
      }
    });
  }

  connect();
})();
