(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("gallery-data").textContent);
  var groups = data.groups;
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var picked = new Set();
  var focused = 0;
  var box = { open: false, group: -1, view: 0, other: -1, returnFocus: null };
  var storeKey = "pipeline-gallery:" + data.run.dir;
  var $ = function (id) { return document.getElementById(id); };

  // ------------------------------------------------------------ the command
  function runDir() {
    if (location.protocol === "file:") {
      var dir = decodeURIComponent(location.pathname).replace(/\/[^\/]*$/, "");
      if (/^\/[A-Za-z]:\//.test(dir)) dir = dir.slice(1);
      if (dir.split("/").pop() === data.run.name) return dir;  // the page was moved along with its run
    }
    return data.run.dir;
  }
  function shellQuote(text) {
    if (/^[A-Za-z0-9_@%+=:,.\/-]+$/.test(text)) return text;
    return "'" + text.replace(/'/g, "'\"'\"'") + "'";
  }
  function pickedSeeds() {
    var seeds = [];
    groups.forEach(function (group, index) {
      if (picked.has(index) && group.seed !== null) seeds.push(group.seed);
    });
    return seeds;
  }
  function command(seeds) {
    // --out names the run's output folder, so the command finds the store from any directory
    var dir = runDir();
    var out = dir.replace(/\/[^\/]*$/, "") || "/";
    return "pipeline refine --run " + shellQuote(dir) + " --seeds " + seeds.join(",") + " --out " + shellQuote(out);
  }
  function showCommand(text) {
    // one unbreakable span per word, so a line never breaks inside "--out" or a path's dashes
    var el = $("cmd");
    el.textContent = "";
    el.dataset.command = text;
    if (!text) { el.textContent = "Pick the candidates you like; the refine command appears here."; return; }
    text.split(" ").forEach(function (word, index) {
      if (index) el.appendChild(document.createTextNode(" "));
      var span = document.createElement("span");
      span.className = "tok";
      span.textContent = word;
      el.appendChild(span);
    });
  }
  function configSnippet(seeds) { return "refine:\n  picks: [" + seeds.join(", ") + "]"; }

  function update() {
    var seeds = pickedSeeds();
    cards.forEach(function (card, index) {
      var on = picked.has(index);
      card.classList.toggle("picked", on);
      card.setAttribute("aria-checked", on ? "true" : "false");
    });
    var any = seeds.length > 0;
    document.body.classList.toggle("has-picks", any);
    $("count").textContent = any ? seeds.length + " of " + groups.length + " picked" : "Nothing picked yet";
    showCommand(any ? command(seeds) : "");
    $("cfg").textContent = any ? configSnippet(seeds) : "";
    $("copy-cmd").disabled = $("copy-cfg").disabled = $("clear").disabled = !any;
    if (box.open) showPickState();
    // keyboard focus scrolls cards into view above the sticky bar, whatever its height now
    document.documentElement.style.scrollPaddingBottom = ($("bar").offsetHeight + 12) + "px";
    try { localStorage.setItem(storeKey, JSON.stringify(seeds)); } catch (e) { /* storage may be off */ }
  }
  function toggle(index) {
    if (index < 0 || index >= groups.length || groups[index].seed === null) return;
    if (picked.has(index)) picked.delete(index); else picked.add(index);
    update();
  }
  function restore() {
    var saved = data.picks;  // RUN/picks.json, when the browser app saved picks
    if (!Array.isArray(saved)) {
      try { saved = JSON.parse(localStorage.getItem(storeKey) || "[]"); } catch (e) { saved = []; }
    }
    if (!Array.isArray(saved)) return;
    groups.forEach(function (group, index) {
      if (group.seed !== null && saved.indexOf(group.seed) >= 0) picked.add(index);
    });
  }

  // ------------------------------------------------------------ copying
  var toastTimer = null;
  function toast(text) {
    var el = $("toast");
    el.textContent = text;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.classList.remove("show"); }, 1600);
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }
  function copy(text, what) {
    var done = function (ok) { toast(ok ? what + " copied" : "Select the text and press Ctrl+C to copy"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
    } else {
      done(fallbackCopy(text));
    }
  }

  // ------------------------------------------------------------ grid focus and keys
  function columns() {
    if (cards.length < 2) return 1;
    var top = cards[0].offsetTop, n = 0;
    while (n < cards.length && cards[n].offsetTop === top) n++;
    return Math.max(1, n);
  }
  function focusCard(index) {
    if (!cards.length) return;
    index = Math.max(0, Math.min(cards.length - 1, index));
    cards[focused].tabIndex = -1;
    focused = index;
    cards[index].tabIndex = 0;
    cards[index].focus({ preventScroll: true });
    cards[index].scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  function gridKey(event) {
    var step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns(), ArrowDown: columns(),
                 Home: -Infinity, End: Infinity }[event.key];
    if (step !== undefined) {
      event.preventDefault();
      focusCard(isFinite(step) ? focused + step : (step < 0 ? 0 : cards.length - 1));
    } else if (event.key === " " || event.key === "Spacebar") {
      event.preventDefault();
      toggle(focused);
    } else if (event.key === "Enter") {
      event.preventDefault();
      openGroup(focused, 0);
    }
  }

  // ------------------------------------------------------------ lightbox
  function current() {
    if (box.other >= 0) return data.others[box.other];
    var group = groups[box.group];
    return box.view === 0 ? group.candidate : group.results[box.view - 1];
  }
  var ORDER = ["prompt", "negative", "mode", "strength", "enlarge", "scale", "steps", "guidance", "model_name",
               "model", "dtype", "seconds", "cached", "key", "parent_key", "model_fingerprint", "created", "source"];
  var LABELS = { model_name: "model", dtype: "precision", model_fingerprint: "fingerprint", parent_key: "parent key",
                 cached: "from the store", seconds: "time" };
  function formatValue(key, value) {
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (key === "seconds" && typeof value === "number") return value.toFixed(2) + " s";
    if (key === "created" && typeof value === "string") return value.replace("T", " ");
    return value;
  }
  function row(table, key, value) {
    if (value === null || value === undefined || value === "") return;
    var tr = document.createElement("tr");
    var th = document.createElement("th");
    var td = document.createElement("td");
    th.textContent = key;
    td.textContent = String(value);
    if (/^[0-9a-f]{32,}$/.test(td.textContent)) td.className = "mono";
    tr.appendChild(th);
    tr.appendChild(td);
    table.appendChild(tr);
  }
  function showPickState() {
    var button = $("lb-pick");
    button.hidden = box.other >= 0 || groups[box.group].seed === null;
    if (button.hidden) return;
    var on = picked.has(box.group);
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? "✓ Picked (Space to unpick)" : "Pick this seed (Space)";
  }
  function render() {
    var picture = current();
    var img = $("lb-img");
    $("lb-loading").hidden = false;
    img.removeAttribute("src");
    img.alt = picture.label;
    img.src = picture.path;  // the full picture loads only now
    var title = picture.seed !== null ? "seed " + picture.seed : "picture";
    $("lb-title").textContent = title + " · " + picture.label.split(" · ")[0];
    var tabs = $("lb-tabs");
    tabs.textContent = "";
    if (box.other < 0) {
      var group = groups[box.group];
      [group.candidate].concat(group.results).forEach(function (pic, view) {
        var tab = document.createElement("button");
        tab.type = "button";
        tab.textContent = pic.label;
        tab.setAttribute("aria-pressed", view === box.view ? "true" : "false");
        tab.addEventListener("click", function () { box.view = view; render(); });
        tabs.appendChild(tab);
      });
    }
    var table = $("lb-params");
    table.textContent = "";
    // run-wide settings, then the picture's own; an upscale shares only the prompt with the run
    var base = picture.stage === "upscale" ? { prompt: data.run.params.prompt, negative: data.run.params.negative }
                                           : data.run.params;
    var params = Object.assign({}, base, picture.params);
    var shown = { path: true, seed: true, width: true, height: true, model: !!params.model_name };
    row(table, "seed", picture.seed);
    if (picture.size) row(table, "size", picture.size[0] + " × " + picture.size[1]);
    else if (params.width && params.height) row(table, "size", params.width + " × " + params.height);
    ORDER.concat(Object.keys(params)).forEach(function (key) {
      if (shown[key] || !(key in params)) return;
      shown[key] = true;
      var label = picture.stage === "upscale" && key === "model" ? "upscaler" : LABELS[key] || key.replace(/_/g, " ");
      row(table, label, formatValue(key, params[key]));
    });
    row(table, "file", decodeURIComponent(picture.path));
    $("lb-open").href = picture.path;
    var single = box.other >= 0 ? data.others.length < 2 : groups.length < 2;
    $("lb-prev").hidden = $("lb-next").hidden = single;
    showPickState();
  }
  function show() {
    if (!box.open) {
      box.returnFocus = document.activeElement;
      box.open = true;
      $("lightbox").hidden = false;
      document.body.style.overflow = "hidden";
    }
    render();
    $("lb-close").focus({ preventScroll: true });
  }
  function openGroup(index, view) {
    if (index < 0 || index >= groups.length) return;
    box.group = index; box.view = view || 0; box.other = -1;
    show();
  }
  function openOther(index) {
    box.other = index; box.group = -1; box.view = 0;
    show();
  }
  function close() {
    if (!box.open) return;
    box.open = false;
    $("lightbox").hidden = true;
    $("lb-img").removeAttribute("src");
    document.body.style.overflow = "";
    if (box.group >= 0) focusCard(box.group);
    else if (box.returnFocus && box.returnFocus.focus) box.returnFocus.focus();
  }
  function step(delta) {
    if (box.other >= 0) {
      var n = data.others.length;
      box.other = (box.other + delta + n) % n;
    } else {
      box.group = (box.group + delta + groups.length) % groups.length;
      box.view = 0;
      focused = box.group;
    }
    render();
  }
  function lightboxKey(event) {
    if (event.key === "Escape") { event.preventDefault(); close(); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
    else if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    else if ((event.key === " " || event.key === "Spacebar") && box.other < 0) { event.preventDefault(); toggle(box.group); }
  }

  // ------------------------------------------------------------ wiring
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (box.open) { lightboxKey(event); return; }
    var target = event.target;
    var onCard = target && target.classList && target.classList.contains("card");
    if (onCard) { focused = cards.indexOf(target); gridKey(event); return; }
    if (target === document.body || target === document.documentElement) {
      if (/^Arrow/.test(event.key)) { event.preventDefault(); focusCard(focused); }
      else if (event.key === "Escape") { /* nothing open */ }
    }
  });
  cards.forEach(function (card, index) {
    card.addEventListener("click", function (event) {
      var zoom = event.target.closest(".zoom");
      var result = event.target.closest(".result");
      focusCard(index);
      if (zoom) openGroup(index, 0);
      else if (result) openGroup(index, Number(result.getAttribute("data-result")) + 1);
      else toggle(index);
    });
    card.addEventListener("dblclick", function (event) { event.preventDefault(); });
  });
  Array.prototype.forEach.call(document.querySelectorAll(".other"), function (button) {
    button.addEventListener("click", function () { openOther(Number(button.getAttribute("data-other"))); });
  });
  $("lb-close").addEventListener("click", close);
  $("lb-prev").addEventListener("click", function () { step(-1); });
  $("lb-next").addEventListener("click", function () { step(1); });
  $("lb-pick").addEventListener("click", function () { toggle(box.group); });
  $("lightbox").addEventListener("click", function (event) {
    if (event.target === $("lightbox") || event.target.classList.contains("stage")) close();
  });
  $("lb-img").addEventListener("load", function () { $("lb-loading").hidden = true; });
  $("lb-img").addEventListener("error", function () {
    if ($("lb-img").getAttribute("src")) { $("lb-loading").hidden = false; $("lb-loading").textContent = "cannot load this file"; }
  });
  $("copy-cmd").addEventListener("click", function () { copy($("cmd").dataset.command || "", "Command"); });
  $("copy-cfg").addEventListener("click", function () { copy($("cfg").textContent, "Config"); });
  $("clear").addEventListener("click", function () { picked.clear(); update(); });
  // a thumbnail that fails to load falls back to the full picture
  Array.prototype.forEach.call(document.querySelectorAll("img.thumb, img.rthumb"), function (img) {
    var fallback = function () {
      var card = img.closest(".card");
      var index = card ? Number(card.getAttribute("data-index")) : -1;
      if (index >= 0 && img.classList.contains("thumb") && !img.dataset.fallback) {
        img.dataset.fallback = "1";
        img.src = groups[index].candidate.path;
      }
    };
    img.addEventListener("error", fallback);
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) fallback();
  });

  restore();
  update();
  document.documentElement.classList.add("js");
})();
