"use strict";
// The status page: reads /status.json a few times a second and shows it.
// Everything is built with textContent: names and paths are never markup.
(() => {
  const REFRESH_MS = 300;
  const RETRY_MS = 2000;
  const KEY = "filedock.token";
  const $ = (id) => document.getElementById(id);
  const tokenRequired = document.documentElement.dataset.token === "required";
  let token = sessionStorage.getItem(KEY);

  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function bytes(n) {
    let i = 0;
    while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + UNITS[i];
  }
  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s} s`;
    return `${s} s`;
  }
  const clock = (epoch) => new Date(epoch * 1000).toLocaleTimeString();
  const day = (epoch) => new Date(epoch * 1000).toLocaleString();

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }
  function rows(tbody, items, toCells, empty) {
    const made = items.map((item) => {
      const tr = document.createElement("tr");
      tr.append(...toCells(item));
      return tr;
    });
    if (!made.length) {
      const tr = document.createElement("tr");
      const td = cell(empty, "muted");
      td.colSpan = 4;
      tr.append(td);
      made.push(tr);
    }
    tbody.replaceChildren(...made);
  }
  function doing(activity) {
    if (!activity) return "idle";
    const what = activity.path ? `${activity.verb} ${activity.path}` : activity.verb;
    if (activity.size === null) return what;
    const share = activity.size ? Math.floor((100 * activity.done) / activity.size) : 100;
    return `${what} (${share}%)`;
  }
  function counterName(counter) {
    const labels = Object.entries(counter.labels).map(([k, v]) => `${k}=${v}`);
    return labels.length ? `${counter.name}{${labels.join(",")}}` : counter.name;
  }
  function total(counters, name) {
    return counters.filter((c) => c.name === name).reduce((sum, c) => sum + c.value, 0);
  }

  function showTransfers(transfers) {
    const box = $("transfers");
    if (!transfers.length) {
      const none = document.createElement("p");
      none.className = "muted";
      none.textContent = "None.";
      box.replaceChildren(none);
      return;
    }
    box.replaceChildren(...transfers.map((t) => {
      const div = document.createElement("div");
      div.className = "transfer";
      div.dataset.client = t.client;
      const what = document.createElement("div");
      what.className = "what";
      what.textContent = `${t.client}: ${t.verb} ${t.path ?? ""}`;
      const bar = document.createElement("progress");
      bar.max = Math.max(t.size, 1);
      bar.value = t.size ? t.done : 1;
      const figures = document.createElement("div");
      figures.className = "muted";
      const left = t.rate > 0 ? ` · ${duration((t.size - t.done) / t.rate)} left` : "";
      figures.textContent = `${bytes(t.done)} of ${bytes(t.size)} · ${bytes(t.rate)}/s${left}`;
      div.append(what, bar, figures);
      return div;
    }));
  }

  function drawChart(series, interval) {
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(canvas.clientWidth, 1), height = Math.max(canvas.clientHeight, 1);
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const highest = Math.max(0, ...series);
    const peak = Math.max(1, highest);  // the scale: a flat line at 0 stays at the bottom
    // The server keeps five minutes; until it has them, the last minute at least.
    const span = Math.max(series.length, 60);
    const step = width / (span - 1);
    const x0 = width - (series.length - 1) * step;
    g.beginPath();
    g.moveTo(x0, height);
    series.forEach((value, i) => g.lineTo(x0 + i * step, height - 4 - (value / peak) * (height - 20)));
    g.lineTo(width, height);
    g.closePath();
    g.fillStyle = style.getPropertyValue("--accent").trim() || "#2f6fdb";
    g.globalAlpha = 0.35;
    g.fill();
    g.globalAlpha = 1;
    g.fillStyle = style.getPropertyValue("--muted").trim() || "#66707a";
    g.font = "12px system-ui, sans-serif";
    g.fillText(`peak ${bytes(highest)}/s`, 6, 14);
    $("chart-span").textContent = `(last ${duration(series.length * interval)})`;
  }

  function render(doc) {
    const health = $("health");
    health.textContent = doc.server.stopping ? "stopping" : "serving";
    health.className = "pill " + (doc.server.stopping ? "down" : "ok");
    $("banner").textContent = doc.server.banner;
    $("clients-now").textContent = `${doc.clients.length} / ${doc.server.max_clients}`;
    const series = doc.rate.bytes_per_second;
    $("rate-now").textContent = bytes(series.length ? series[series.length - 1] : 0) + "/s";
    $("sent").textContent = bytes(total(doc.counters, "bytes_sent"));
    $("received").textContent = bytes(total(doc.counters, "bytes_received"));
    $("uptime").textContent = duration(doc.server.uptime);
    showTransfers(doc.transfers);
    rows($("clients"), doc.clients, (c) => [
      cell(c.name), cell(c.address), cell(`${clock(c.since)} (${duration(doc.server.time - c.since)})`),
      cell(doing(c.activity), "wrap"),
    ], "No client connected.");
    rows($("history"), doc.history.slice().reverse(), (r) => [
      cell(r.name), cell(r.address), cell(day(r.connected)),
      cell(r.finished === null ? "connected" : day(r.finished)),
    ], "No client yet.");
    rows($("counters"), doc.counters, (c) => [cell(counterName(c)), cell(String(c.value), "num")], "");
    drawChart(series, doc.rate.interval);
  }

  function problem(text) { $("problem").textContent = text; }

  function askToken(message) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message;
    $("health").textContent = "token needed";
    $("token").focus();
  }

  async function refresh() {
    let response;
    try {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      response = await fetch("status.json", { headers, cache: "no-store" });
    } catch (err) {
      problem("The server cannot be reached; retrying.");
      setTimeout(refresh, RETRY_MS);
      return;
    }
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      token = null;
      askToken("That token is not accepted.");
      return;
    }
    if (!response.ok) {
      problem(`status.json answered ${response.status}; retrying.`);
      setTimeout(refresh, RETRY_MS);
      return;
    }
    render(await response.json());
    $("login").hidden = true;
    $("main").hidden = false;
    problem("");
    setTimeout(refresh, REFRESH_MS);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    $("token").value = "";
    refresh();
  });

  if (tokenRequired && !token) askToken("");
  else refresh();
})();
