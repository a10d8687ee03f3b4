"""The pages of the web view: status (``/``), login (``/login``) and the 401 answer.

The status page shows the MJPEG stream and numbers refreshed from ``/status.json``; it also samples
the ``<img>`` into a canvas to show whether new stream images arrive. Kept as Python strings so that
they install with the package without package-data settings. Scripts and styles are inline and
admitted by their hashes in the Content-Security-Policy (server.py computes them from these
strings), so no attribute may carry ``style=`` or ``on...=`` code.
"""

# ruff: noqa: E501
PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgesal live saliency</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { padding: 8px 16px; background: #222; display: flex; gap: 24px; align-items: baseline; }
  h1 { font-size: 18px; margin: 0; }
  main { display: flex; flex-wrap: wrap; gap: 16px; padding: 16px; }
  #video { max-width: 100%; border: 1px solid #444; background: #000; }
  section { background: #1c1c1c; padding: 12px 16px; border-radius: 6px; min-width: 280px; }
  table { border-collapse: collapse; width: 100%; }
  td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #333; font-size: 14px; }
  .num { font-variant-numeric: tabular-nums; text-align: right; }
  .bad { color: #ff6b6b; } .ok { color: #7bd88f; } .warn { color: #ffd166; }
</style>
</head>
<body>
<header>
  <h1>edgesal &mdash; live saliency</h1>
  <span id="conn" class="warn">connecting&hellip;</span>
  <span>stream: <b id="stream-state" class="warn">waiting</b>
    (<span id="stream-updates">0</span> new images seen)</span>
</header>
<main>
  <div><img id="video" src="/stream.mjpg" alt="saliency overlay stream"></div>
  <section>
    <h2>Now</h2>
    <table>
      <tr><td>fps</td><td class="num" id="fps">&ndash;</td></tr>
      <tr><td>latency p50 / p95 (ms)</td><td class="num" id="latency">&ndash;</td></tr>
      <tr><td>model p50 / p95 (ms)</td><td class="num" id="model">&ndash;</td></tr>
      <tr><td>temperature (&deg;C)</td><td class="num" id="temperature">&ndash;</td></tr>
      <tr><td>memory RSS (MB)</td><td class="num" id="memory">&ndash;</td></tr>
      <tr><td>frames / maps</td><td class="num" id="frames">&ndash;</td></tr>
      <tr><td>dropped / corrupt / reopens</td><td class="num" id="losses">&ndash;</td></tr>
      <tr><td>self-check unfaithful / checked</td><td class="num" id="selfcheck">&ndash;</td></tr>
      <tr><td>method</td><td id="method">&ndash;</td></tr>
      <tr><td>governor</td><td id="governor">&ndash;</td></tr>
      <tr><td>status updated</td><td id="updated">&ndash;</td></tr>
    </table>
  </section>
  <section>
    <h2>Last predictions</h2>
    <table><thead><tr><th>frame</th><th>label</th><th class="num">score</th><th>map</th></tr></thead>
      <tbody id="last"></tbody></table>
  </section>
  <section>
    <h2>Governor decisions</h2>
    <table><tbody id="decisions"></tbody></table>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (v, d = 1) => (v === null || v === undefined) ? "\u2013" : Number(v).toFixed(d);
let updates = 0, lastSum = null, polls = 0;

function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls;
}

function render(s) {
  $("fps").textContent = fmt(s.fps);
  $("latency").textContent = fmt(s.latency_ms.p50) + " / " + fmt(s.latency_ms.p95);
  $("model").textContent = fmt(s.model_ms.p50) + " / " + fmt(s.model_ms.p95);
  const g = s.governor;
  $("temperature").textContent = fmt(g.temperature_c);
  $("memory").textContent = g.rss_bytes ? fmt(g.rss_bytes / 1048576, 0) : "\u2013";
  $("frames").textContent = s.frames + " / " + s.maps;
  $("losses").textContent = s.dropped + " / " + s.corrupt + " / " + s.reopens;
  $("selfcheck").textContent = s.unfaithful + " / " + s.selfchecks;
  $("method").textContent = s.method + " on " + s.backend;
  const st = g.state;
  $("governor").textContent = "level " + st.level + "/" + g.levels +
    (st.paused ? ", paused" : "") + ", map every " + st.saliency_every +
    " frame(s), scale " + st.scale;
  $("governor").className = st.level ? "warn" : "ok";
  polls += 1;
  $("updated").textContent = new Date().toLocaleTimeString() + " (frame " + s.frames +
    ", update #" + polls + ")";
  const last = $("last"); last.textContent = "";
  for (const p of s.last) {
    const row = last.insertRow();
    cell(row, p.frame); cell(row, p.label); cell(row, fmt(p.score, 3), "num");
    const check = p.faithful === null || p.faithful === undefined ? (p.map ? "map" : "") :
      (p.faithful ? "faithful" : "UNFAITHFUL");
    cell(row, check, p.faithful === false ? "bad" : "");
  }
  const dec = $("decisions"); dec.textContent = "";
  for (const d of g.decisions.slice().reverse()) {
    const row = dec.insertRow();
    cell(row, new Date(d.time * 1000).toLocaleTimeString());
    cell(row, d.action); cell(row, d.reason);
  }
}

async function poll() {
  try {
    const r = await fetch("/status.json", {cache: "no-store"});
    if (r.status === 401) { window.location.assign("/login"); return; }
    render(await r.json());
    $("conn").textContent = "connected"; $("conn").className = "ok";
  } catch (e) {
    $("conn").textContent = "disconnected"; $("conn").className = "bad";
  }
}

// Notice new MJPEG images: sample the <img> into a small canvas and compare pixel sums.
const canvas = document.createElement("canvas"); canvas.width = 32; canvas.height = 24;
const ctx = canvas.getContext("2d", {willReadFrequently: true});
function watchStream() {
  const img = $("video");
  if (!img.naturalWidth) return;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0; for (let i = 0; i < px.length; i += 1) sum = (sum * 31 + px[i]) % 1000000007;
  if (lastSum !== null && sum !== lastSum) updates += 1;
  lastSum = sum;
  $("stream-updates").textContent = updates;
  $("stream-state").textContent = updates ? "live" : "still";
  $("stream-state").className = updates ? "ok" : "warn";
}
setInterval(poll, 500);
setInterval(watchStream, 250);
poll();
</script>
</body>
</html>
"""

LOGIN_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgesal live saliency: log in</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  form { margin: 64px auto; max-width: 420px; background: #1c1c1c; padding: 16px 24px; border-radius: 6px; }
  input { width: 100%; box-sizing: border-box; margin: 8px 0; padding: 6px; }
  .bad { color: #ff6b6b; }
</style>
</head>
<body>
<form method="post" action="/login">
  <h1>edgesal &mdash; log in</h1>
  <p class="bad" id="note">{note}</p>
  <label for="token">Token (the contents of the run's <code>--token-file</code>)</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <input id="submit" type="submit" value="Log in">
</form>
</body>
</html>
"""

UNAUTHORIZED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgesal: 401</title></head>
<body><p>This view needs its token: <a href="/login">log in</a>, or send
<code>Authorization: Bearer &lt;token&gt;</code>.</p></body></html>
"""
