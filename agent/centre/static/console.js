// The console's behaviour: no inline script (the CSP forbids it), no framework, no CDN.
"use strict";

(function () {
  // Language menu: submit on change.
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.value) select.form.submit();
    });
  });

  // Only one player plays at a time.
  var players = Array.prototype.slice.call(document.querySelectorAll("audio.player"));
  players.forEach(function (audio) {
    audio.addEventListener("play", function () {
      players.forEach(function (other) {
        if (other !== audio) other.pause();
      });
    });
  });

  // The call page's player: speed, a waveform to click, a cursor, keyboard shortcuts.
  // A recording the server found missing has no player (the page says why); one that the
  // browser cannot load after all says so in the player's place instead of sitting at 0:00.
  document.querySelectorAll("section.recording").forEach(function (section) {
    var audio = section.querySelector("audio");
    if (!audio) return;
    audio.addEventListener("error", function () {
      var problem = section.querySelector(".recording-problem");
      if (problem) problem.hidden = false;
      section.classList.add("unavailable");
      audio.hidden = true;
      section.querySelectorAll("img.waveform, .progress, label, a.download, .hint").forEach(function (node) {
        node.hidden = true;
      });
    });
    var speed = section.querySelector("select.speed");
    var wave = section.querySelector("img.waveform");
    var cursor = section.querySelector(".cursor");
    speed.addEventListener("change", function () {
      audio.playbackRate = parseFloat(speed.value) || 1;
    });
    wave.addEventListener("click", function (event) {
      if (!isFinite(audio.duration)) return;
      var box = wave.getBoundingClientRect();
      audio.currentTime = audio.duration * Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
    });
    audio.addEventListener("timeupdate", function () {
      if (isFinite(audio.duration) && audio.duration > 0) {
        cursor.style.width = (100 * audio.currentTime / audio.duration).toFixed(2) + "%";
      }
    });
  });

  var main = document.querySelector("audio.main-player");
  if (main) {
    document.addEventListener("keydown", function (event) {
      var tag = (event.target && event.target.tagName) || "";
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || event.ctrlKey || event.metaKey) return;
      var speed = document.querySelector("select.speed");
      if (event.key === " " || event.key === "k") {
        if (main.paused) main.play(); else main.pause();
      } else if (event.key === "ArrowLeft" || event.key === "j") {
        main.currentTime = Math.max(main.currentTime - 5, 0);
      } else if (event.key === "ArrowRight" || event.key === "l") {
        main.currentTime = main.currentTime + 5;
      } else if (event.key === "[" || event.key === "]") {
        var i = speed.selectedIndex + (event.key === "]" ? 1 : -1);
        speed.selectedIndex = Math.min(Math.max(i, 0), speed.options.length - 1);
        main.playbackRate = parseFloat(speed.value) || 1;
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  // The wallboard: figures pushed by Server-Sent Events, rows built with textContent only.
  var board = document.getElementById("wallboard");
  if (board) wallboard(board);

  function wallboard(board) {
    var interval = parseInt(board.getAttribute("data-interval"), 10) || 5000;
    var body = document.getElementById("wb-rows");
    var state = document.getElementById("wb-state");
    var pageLabel = document.getElementById("wb-page");
    var ticks = []; // [cell, seconds at arrival, arrival ms]
    var page = 0;
    var pages = 1;

    function pad(n) { return (n < 10 ? "0" : "") + n; }
    function duration(total) {
      total = Math.max(Math.floor(total), 0);
      var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
      return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
    }
    function el(tag, className, text) {
      var node = document.createElement(tag);
      if (className) node.className = className;
      if (text !== undefined && text !== null) node.textContent = String(text);
      return node;
    }
    function bar(cell, figure) {
      var td = el("td", "bar-cell " + cell + (figure.met ? " met" : ""));
      td.appendChild(el("span", "v", figure.text));
      if (figure.target !== null) {
        td.appendChild(el("span", "pct", figure.percent + "%"));
        var progress = el("progress");
        progress.max = 1;
        progress.value = figure.share;
        td.appendChild(progress);
      }
      return td;
    }
    // The same row as templates/_wallboard_row.html.
    function wallboardRow(r) {
      var tr = el("tr", [r.mine ? "mine" : "", r.on_call ? "on-call" : "", r.ringing ? "ringing" : ""].join(" ").trim());
      tr.setAttribute("data-rep", r.rep);
      var name = el("td", "name", r.name);
      name.setAttribute("data-rank", r.rank);
      tr.appendChild(name);
      tr.appendChild(bar("calls", r.calls_bar));
      tr.appendChild(el("td", "io", r.inbound + " / " + r.outbound));
      var conn = el("td", "conn", r.connects);
      if (r.connect_rate) {
        conn.appendChild(document.createTextNode(" "));
        conn.appendChild(el("span", "rate", r.connect_rate));
      }
      tr.appendChild(conn);
      tr.appendChild(bar("talk", r.talk_bar));
      tr.appendChild(el("td", "avg", r.avg_talk));
      tr.appendChild(bar("effective", r.effective_bar));
      var since = el("td", "since", r.on_call_seconds === null ? "" : duration(r.on_call_seconds));
      if (r.on_call_seconds !== null) since.setAttribute("data-seconds", r.on_call_seconds);
      tr.appendChild(since);
      tr.appendChild(el("td", "dot", r.on_call ? "\u25cf" : ""));
      return tr;
    }
    function tile(figure, value) {
      var box = document.querySelector('.tile[data-figure="' + figure + '"]');
      if (!box) return;
      box.classList.toggle("met", !!value.met);
      box.querySelector(".of").textContent = value.target === null ? "" : " / " + value.target;
      var progress = box.querySelector("progress");
      progress.hidden = value.target === null;
      progress.value = value.share;
    }
    function collectTicks() {
      var now = Date.now();
      ticks = Array.prototype.map.call(body.querySelectorAll("td.since[data-seconds]"), function (cell) {
        return [cell, parseInt(cell.getAttribute("data-seconds"), 10), now];
      });
    }
    function show(data) {
      document.getElementById("wb-at").textContent = data.at;
      var total = data.total;
      document.getElementById("wb-calls").textContent = total.calls;
      document.getElementById("wb-talk").textContent = total.talk;
      document.getElementById("wb-missed").textContent = total.missed;
      document.getElementById("wb-effective").textContent = total.effective;
      document.getElementById("wb-io").textContent = total.inbound + " / " + total.outbound;
      document.getElementById("wb-connects").textContent = total.connects;
      document.getElementById("wb-rate").textContent = total.connect_rate;
      document.getElementById("wb-avg").textContent = total.avg_talk;
      tile("calls_bar", total.calls_bar);
      tile("talk_bar", total.talk_bar);
      tile("effective_bar", total.effective_bar);
      while (body.firstChild) body.removeChild(body.firstChild);
      data.rows.forEach(function (row) { body.appendChild(wallboardRow(row)); });
      document.getElementById("wb-empty").hidden = data.rows.length > 0;
      collectTicks();
      fit();
    }

    // Text wider than its box is made smaller, down to min px; a name that still does not fit
    // takes two lines. Nothing is cut or scrolls sideways.
    function fitText(node, min, wrap) {
      node.style.fontSize = "";
      node.classList.remove("wrap");
      var size = parseFloat(window.getComputedStyle(node).fontSize);
      while (node.scrollWidth > node.clientWidth && size > min) {
        size -= 1;
        node.style.fontSize = size + "px";
      }
      if (wrap && node.scrollWidth > node.clientWidth) node.classList.add("wrap");
    }
    function fitAll() {
      var height = window.innerHeight;
      document.querySelectorAll(".wb-total .tile").forEach(function (tile) { fitText(tile, height * 0.025, false); });
      Array.prototype.forEach.call(body.querySelectorAll("tr:not([hidden]) td"), function (cell) {
        fitText(cell, height * 0.022, cell.classList.contains("name"));
      });
    }

    // Rows as tall as the screen allows (up to 9 % of its height); below 5 % a page of them at
    // a time, the pages turning every 10 s.
    function fit() {
      var rows = body.rows;
      var height = window.innerHeight;
      for (var i = 0; i < rows.length; i++) rows[i].hidden = false;
      var top = body.getBoundingClientRect().top + window.scrollY;
      var room = height - top - height * 0.02;
      var perPage = Math.max(Math.floor(room / (height * 0.05)), 1);
      pages = Math.max(Math.ceil(rows.length / perPage), 1);
      if (page >= pages) page = 0;
      var shown = Math.min(rows.length, perPage) || 1;
      var rowHeight = Math.min(Math.max(room / shown, height * 0.05), height * 0.09);
      board.style.setProperty("--wb-row", Math.floor(rowHeight - 1) + "px");
      for (var j = 0; j < rows.length; j++) rows[j].hidden = Math.floor(j / perPage) !== page;
      pageLabel.textContent = pages > 1 ? board.getAttribute("data-t-page") + " " + (page + 1) + "/" + pages : "";
      fitAll();
    }
    setInterval(function () {
      if (pages > 1) {
        page = (page + 1) % pages;
        fit();
      }
    }, 10000);
    window.addEventListener("resize", fit);

    // Time on the current call, ticking between events.
    setInterval(function () {
      var now = Date.now();
      ticks.forEach(function (tick) {
        tick[0].textContent = duration(tick[1] + (now - tick[2]) / 1000);
      });
    }, 1000);

    function say(name) {
      state.setAttribute("data-state", name);
      state.textContent = board.getAttribute("data-t-" + name);
    }

    // Reconnecting by itself: EventSource retries a dropped connection on its own (after the
    // server's "retry"), but gives up for good on an answer that is not a stream (a proxy's
    // 502, a log-in page once the session ended), and cannot see a connection that went
    // silent. Both start a new one here, backing off to 30 s; after three failures in a row
    // the page reloads if the centre answers /healthz (an ended session then shows the log-in
    // form, which brings the TV back here).
    var source = null;
    var lastFrame = Date.now();
    var failures = 0;
    var retryTimer = null;
    function connect() {
      retryTimer = null;
      if (source) source.close();
      lastFrame = Date.now();
      source = new EventSource(board.getAttribute("data-events"));
      source.addEventListener("figures", function (event) {
        lastFrame = Date.now();
        failures = 0;
        say("live");
        show(JSON.parse(event.data));
      });
      source.onerror = function () {
        say("reconnecting");
        if (source.readyState === EventSource.CLOSED) retry();
      };
    }
    function retry() {
      if (retryTimer) return;
      failures += 1;
      var wait = Math.min(1000 * Math.pow(2, failures - 1), 30000);
      if (failures >= 3) {
        fetch("/healthz", { cache: "no-store" }).then(function (response) {
          if (response.ok) window.location.reload();
        }).catch(function () {});
      }
      retryTimer = setTimeout(connect, wait);
    }
    setInterval(function () {
      if (Date.now() - lastFrame > Math.max(3 * interval, 15000)) {
        say("reconnecting");
        if (source) source.close();
        lastFrame = Date.now();
        retry();
      }
    }, 2000);
    if (window.EventSource) connect();
    collectTicks();
    fit();

    // Kiosk: a click (or key) anywhere asks for the whole screen; Chromium's --kiosk needs none.
    if (board.getAttribute("data-kiosk") === "1") {
      var full = function () {
        if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
          document.documentElement.requestFullscreen().catch(function () {});
        }
      };
      document.addEventListener("click", full);
      document.addEventListener("keydown", full);
    }
  }
})();
