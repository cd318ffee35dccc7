// A picture grid of the browser app and the page's one large view (run as gr.HTML's js_on_load:
// element, trigger, props, server, watch are given). The grid draws its cards itself and, when its
// value grows (explore streaming), appends only the new ones. Keys as in the static gallery:
// arrows move between cards, Enter opens the large view, Space (or P) picks; in the large view
// ←/→ walk the run, Space/P pick, Z zooms, Esc closes. Every user text goes in as textContent.
"use strict";
var stage = props.stage || "explore";
var root = element.querySelector(".pgrid");
var head = element.querySelector(".pgrid-head");
var list = element.querySelector(".pgrid-cards");
var state = { run: undefined, base: "", asked: 0, asking: 0, items: [], paths: [], picks: new Set(), drawn: 0, focused: 0 };
var ZIP = { explore: ["picked", "⬇ Picked (zip)"], refine: ["refine", "⬇ All refined (zip)"],
            upscale: ["upscale", "⬇ All upscaled (zip)"] }[stage];

function src(path) { return /^gradio_api\//.test(path) ? path : state.base + path; }
// a picture re-made at the same path (a second refine) is another file: its version (mtime, size) keys
// the card and busts the browser's cache of its thumbnail and PNG
function vsrc(path, item) { return src(path) + (item && item.v ? "?v=" + encodeURIComponent(item.v) : ""); }
function ident(item) { return item ? item.p + "#" + (item.v || "") : ""; }
function el(tag, cls, text) {
  var node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ------------------------------------------------------------ header: title · count · picked · zip
var titleEl = el("span", "pgrid-title", props.title || "");
var countEl = el("span", "pgrid-count", "");
var noteEl = el("span", "pgrid-note", "");
noteEl.setAttribute("role", "status");
var zipBtn = el("button", "pgrid-zip", ZIP[1]);
zipBtn.type = "button";
head.append(titleEl, countEl, noteEl, zipBtn);
var noteTimer = null;
function note(text) {
  noteEl.textContent = text || "";
  clearTimeout(noteTimer);
  if (text) noteTimer = setTimeout(function () { noteEl.textContent = ""; }, 6000);
}
function header() {
  var n = state.items.length;
  var text = n ? n + (n === 1 ? " picture" : " pictures") : "";
  if (stage === "explore" && n) text = state.picks.size + " of " + n + " picked";
  if (state.loras) text += (text ? " · " : "") + state.loras;  // the run's LoRAs: "LoRA style 0.7"
  countEl.textContent = text;
  root.setAttribute("data-empty", n ? "0" : "1");
  zipBtn.disabled = !n || (stage === "explore" && !state.picks.size);
}
zipBtn.addEventListener("click", function () {
  if (!state.run) return;
  zipBtn.disabled = true;
  note("making the zip…");
  server.zip_pictures({ run: state.run, which: ZIP[0] }).then(function (answer) {
    header();
    if (!answer || answer.error) { note(answer ? answer.error : "the server did not answer"); return; }
    note(answer.count + " PNG" + (answer.count === 1 ? "" : "s") + " in " + answer.name);
    var a = el("a");
    a.href = answer.url;
    a.download = answer.name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
});

// ------------------------------------------------------------ cards
function card(item, index) {
  var node = el("div", "pcard");
  node.tabIndex = index === state.focused ? 0 : -1;
  node.setAttribute("data-i", String(index));
  if (item.s !== null) node.setAttribute("data-seed", item.s);
  var frame = el("div", "pframe");
  var img = el("img", "pthumb");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = item.c;
  img.src = vsrc(item.t, item);
  img.addEventListener("error", function () {
    if (!img.dataset.fallback) { img.dataset.fallback = "1"; img.src = vsrc(item.p, item); }
  });
  frame.appendChild(img);
  node.appendChild(frame);
  if (stage === "explore" && item.s !== null) {
    var pick = el("button", "ppick", "✓");
    pick.type = "button";
    pick.tabIndex = -1;
    pick.title = "Pick (Space)";
    pick.setAttribute("aria-label", "pick seed " + item.s);
    node.appendChild(pick);
  }
  node.appendChild(el("div", "pcap", item.c));
  node.setAttribute("aria-label", (stage === "explore" ? "candidate " : stage + "d ") + item.c);
  node.setAttribute("role", "button");
  paint(node, item);
  return node;
}
function paint(node, item) {
  var on = item.s !== null && state.picks.has(item.s);
  node.classList.toggle("picked", on);
  var pick = node.querySelector(".ppick");
  if (pick) pick.setAttribute("aria-pressed", on ? "true" : "false");
}
function repaint() {
  Array.prototype.forEach.call(list.children, function (node) {
    paint(node, state.items[Number(node.getAttribute("data-i"))]);
  });
  header();
  if (viewer.grid === api) viewer.render(false);
}
function render() {
  var value = props.value || {};
  var items = Array.isArray(value.items) ? value.items : [];
  // the same run, grown at the end (explore streaming): draw only the new cards
  var same = value.run === state.run && items.length >= state.drawn;
  for (var k = 0; same && k < state.drawn; k++) same = !!items[k] && ident(items[k]) === state.paths[k];
  state.items = items;
  if (!same) {
    state.run = value.run || null;
    state.base = value.base || "";
    state.picks = new Set(Array.isArray(value.picks) ? value.picks : []);
    state.drawn = 0;
    state.paths = [];
    state.focused = 0;
    list.textContent = "";
    if (viewer.grid === api) viewer.close();
  } else if (Array.isArray(value.picks) && JSON.stringify(value.picks) !== state.sentPicks && !state.asking) {
    state.picks = new Set(value.picks);  // the server sent the run's picks anew (none of ours on its way)
  }
  state.sentPicks = JSON.stringify(value.picks || []);
  state.loras = typeof value.loras === "string" ? value.loras : "";
  var fragment = document.createDocumentFragment();
  for (var i = state.drawn; i < items.length; i++) {
    fragment.appendChild(card(items[i], i));
    state.paths.push(ident(items[i]));
  }
  list.appendChild(fragment);  // only the cards not drawn yet
  state.drawn = items.length;
  repaint();
}

function toggle(index) {
  var item = state.items[index];
  if (stage !== "explore" || !item || item.s === null || !state.run) return;
  var on = !state.picks.has(item.s);
  if (on) state.picks.add(item.s); else state.picks.delete(item.s);
  repaint();
  var ask = ++state.asked;
  state.asking++;
  server.pick({ run: state.run, seed: item.s, on: on }).then(function (answer) {
    state.asking--;
    if (!answer || answer.error) {
      if (on) state.picks.delete(item.s); else state.picks.add(item.s);
      repaint();
      note(answer ? answer.error : "the pick was not saved: the server did not answer");
      return;
    }
    // answers can come back out of order: only the last one asked says what the run holds
    if (ask === state.asked) state.picks = new Set(answer.picks);
    repaint();
  });
}

function columns() {
  var cards = list.children;
  if (cards.length < 2) return 1;
  var top = cards[0].offsetTop, n = 0;
  while (n < cards.length && cards[n].offsetTop === top) n++;
  return Math.max(1, n);
}
function focusCard(index) {
  var cards = list.children;
  if (!cards.length) return;
  index = Math.max(0, Math.min(cards.length - 1, index));
  if (cards[state.focused]) cards[state.focused].tabIndex = -1;
  state.focused = index;
  cards[index].tabIndex = 0;
  cards[index].focus({ preventScroll: true });
  cards[index].scrollIntoView({ block: "nearest", inline: "nearest" });
}
list.addEventListener("click", function (event) {
  var node = event.target.closest(".pcard");
  if (!node) return;
  var index = Number(node.getAttribute("data-i"));
  if (event.target.closest(".ppick")) { event.stopPropagation(); toggle(index); return; }
  state.focused = index;
  viewer.open(api, index);
});
list.addEventListener("keydown", function (event) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  var node = event.target.closest && event.target.closest(".pcard");
  if (!node) return;
  state.focused = Number(node.getAttribute("data-i"));
  var step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns(), ArrowDown: columns(),
               Home: -Infinity, End: Infinity }[event.key];
  if (step !== undefined) {
    event.preventDefault();
    focusCard(isFinite(step) ? state.focused + step : (step < 0 ? 0 : list.children.length - 1));
  } else if (event.key === " " || event.key === "Spacebar" || event.key === "p" || event.key === "P") {
    event.preventDefault();
    toggle(state.focused);
  } else if (event.key === "Enter") {
    event.preventDefault();
    viewer.open(api, state.focused);
  }
});

// ------------------------------------------------------------ the large view (one per page)
var api = {
  stage: stage,
  items: function () { return state.items; },
  run: function () { return state.run; },
  src: src,
  vsrc: vsrc,
  picked: function (item) { return item.s !== null && state.picks.has(item.s); },
  toggle: toggle,
  describe: function (item) { return server.describe({ run: state.run, stage: stage, p: item.p }); },
  vary: props.vary ? function (item, strength) { trigger("vary", { run: state.run, seed: item.s, strength: strength }); } : null,
  focus: focusCard,
};
var viewer = window.__pipelineViewer || (window.__pipelineViewer = makeViewer());

function makeViewer() {
  var box = el("div", "pview");
  box.id = "viewer";
  box.hidden = true;
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-modal", "true");
  box.setAttribute("aria-label", "large view");
  var stageEl = el("div", "pview-stage");
  var img = el("img", "pview-img");
  img.id = "viewer-img";
  var loading = el("div", "pview-loading", "loading the full picture…");
  stageEl.append(img, loading);
  var side = el("aside", "pview-side");
  var title = el("h3", "pview-title");
  var buttons = el("div", "pview-buttons");
  function button(text, id, hint) {
    var b = el("button", "pview-btn", text);
    b.type = "button";
    b.id = id;
    if (hint) b.title = hint;
    buttons.appendChild(b);
    return b;
  }
  var pickBtn = button("Pick", "viewer-pick", "Space or P");
  var download = el("a", "pview-btn primary", "⬇ Download PNG");
  download.id = "viewer-download";
  buttons.appendChild(download);
  var zoomBtn = button("Zoom 1:1", "viewer-zoom", "Z, or click the picture");
  var beforeBtn = button("Show before", "viewer-before", "B: the candidate this was refined from");
  var subtle = button("Vary subtle", "viewer-vary-subtle");
  var strong = button("Vary strong", "viewer-vary-strong");
  var table = el("table", "pview-params");
  table.id = "viewer-params";
  var cmdHead = el("div", "pview-k", "Make it again from the CLI");
  var cmd = el("pre", "pview-cmd");
  cmd.id = "viewer-command";
  var copyBtn = el("button", "pview-btn small", "Copy command");
  copyBtn.type = "button";
  var keys = el("p", "pview-keys", "← → walk the run · Space/P pick · Z zoom · Esc close");
  side.append(title, buttons, table, cmdHead, cmd, copyBtn, keys);
  var nav = el("div", "pview-nav");
  var prev = el("button", "pview-arrow", "‹");
  prev.type = "button"; prev.setAttribute("aria-label", "previous (←)");
  var next = el("button", "pview-arrow", "›");
  next.type = "button"; next.setAttribute("aria-label", "next (→)");
  var close = el("button", "pview-close", "×");
  close.type = "button"; close.id = "viewer-close"; close.setAttribute("aria-label", "close (Esc)");
  nav.append(prev, next);
  box.append(stageEl, side, nav, close);
  document.body.appendChild(box);

  var v = { grid: null, index: 0, zoom: false, before: false, returnFocus: null, asked: 0 };
  function current() { return v.grid ? v.grid.items()[v.index] : null; }
  v.render = function (reload) {
    var item = current();
    if (!item) { if (v.grid) v.close(); return; }
    var grid = v.grid;
    var full = v.before && item.b ? grid.src(item.b) : grid.vsrc(item.p, item);
    if (img.getAttribute("src") !== full) {
      loading.hidden = false;
      loading.textContent = "loading the full picture…";
      img.src = full;
    }
    box.classList.toggle("zoomed", v.zoom);
    zoomBtn.textContent = v.zoom ? "Fit to window" : "Zoom 1:1";
    var what = { explore: "candidate", refine: "refined", upscale: "upscaled" }[grid.stage];
    title.textContent = (item.s !== null ? "seed " + item.s : "picture") + " · " + what +
      (item.z ? " · " + item.z[0] + "×" + item.z[1] : "") + "  (" + (v.index + 1) + " of " + grid.items().length + ")";
    var pickable = grid.stage === "explore" && item.s !== null;
    pickBtn.hidden = !pickable;
    if (pickable) {
      var on = grid.picked(item);
      pickBtn.setAttribute("aria-pressed", on ? "true" : "false");
      pickBtn.textContent = on ? "✓ Picked (Space to un-pick)" : "Pick (Space)";
      pickBtn.classList.toggle("on", on);
    }
    download.href = grid.vsrc(item.p, item);
    download.download = (grid.run() || "run") + "-" + grid.stage + "-" + item.p.split("/").pop();
    beforeBtn.hidden = !item.b;
    beforeBtn.textContent = v.before ? "Show after" : "Show before";
    subtle.hidden = strong.hidden = !(grid.vary && pickable);
    prev.hidden = next.hidden = grid.items().length < 2;
    if (reload !== false) describe(item);
  };
  function describe(item) {
    var ask = ++v.asked;
    table.textContent = "";
    cmd.textContent = "…";
    v.grid.describe(item).then(function (answer) {
      if (ask !== v.asked) return;  // the user moved on
      table.textContent = "";
      if (!answer || answer.error) { cmd.textContent = answer ? answer.error : "the server did not answer"; return; }
      answer.params.forEach(function (pair) {
        var tr = el("tr");
        tr.append(el("th", "", pair[0]), el("td", /^[0-9a-f]{32,}$/.test(pair[1]) ? "mono" : "", pair[1]));
        table.appendChild(tr);
      });
      cmd.textContent = answer.command;
    });
  }
  v.open = function (grid, index) {
    if (box.hidden) v.returnFocus = document.activeElement;
    v.grid = grid; v.index = index; v.zoom = false; v.before = false;
    box.hidden = false;
    document.documentElement.classList.add("pview-open");
    v.render(true);
    close.focus({ preventScroll: true });
  };
  v.close = function () {
    if (box.hidden) return;
    box.hidden = true;
    document.documentElement.classList.remove("pview-open");
    img.removeAttribute("src");
    var grid = v.grid;
    v.grid = null;
    if (grid) grid.focus(v.index);
  };
  v.step = function (delta) {
    var n = v.grid.items().length;
    v.index = (v.index + delta + n) % n;
    v.before = false;
    v.render(true);
  };
  img.addEventListener("load", function () { loading.hidden = true; });
  img.addEventListener("error", function () {
    if (img.getAttribute("src")) { loading.hidden = false; loading.textContent = "cannot load this file"; }
  });
  img.addEventListener("click", function () { v.zoom = !v.zoom; v.render(false); });
  zoomBtn.addEventListener("click", function () { v.zoom = !v.zoom; v.render(false); });
  beforeBtn.addEventListener("click", function () { v.before = !v.before; v.render(false); });
  pickBtn.addEventListener("click", function () { v.grid.toggle(v.index); });
  subtle.addEventListener("click", function () { v.grid.vary(current(), "subtle"); v.close(); });
  strong.addEventListener("click", function () { v.grid.vary(current(), "strong"); v.close(); });
  prev.addEventListener("click", function () { v.step(-1); });
  next.addEventListener("click", function () { v.step(1); });
  close.addEventListener("click", v.close);
  copyBtn.addEventListener("click", function () {
    var text = cmd.textContent;
    var done = function () { copyBtn.textContent = "Copied"; setTimeout(function () { copyBtn.textContent = "Copy command"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, function () {});
    else { var r = document.createRange(); r.selectNodeContents(cmd); var s = getSelection(); s.removeAllRanges(); s.addRange(r); }
  });
  box.addEventListener("click", function (event) {
    if (event.target === box || event.target === stageEl) v.close();
  });
  document.addEventListener("keydown", function (event) {
    if (box.hidden || event.altKey || event.ctrlKey || event.metaKey) return;
    var key = event.key;
    if (event.target && event.target.closest && event.target.closest("input, textarea, select") && key !== "Escape") return;
    if (key === "Escape") v.close();
    else if (key === "ArrowLeft") v.step(-1);
    else if (key === "ArrowRight") v.step(1);
    else if (key === " " || key === "Spacebar" || key === "p" || key === "P") v.grid.toggle(v.index);
    else if (key === "z" || key === "Z") { v.zoom = !v.zoom; v.render(false); }
    else if ((key === "b" || key === "B") && current() && current().b) { v.before = !v.before; v.render(false); }
    else return;
    event.preventDefault();
    event.stopPropagation();
  }, true);
  return v;
}

watch("value", render);
render();
