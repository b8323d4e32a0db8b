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
  document.querySelectorAll("section.recording").forEach(function (section) {
    var audio = section.querySelector("audio");
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
  if (board && window.EventSource) {
    var source = new EventSource(board.getAttribute("data-events"));
    source.addEventListener("figures", function (event) {
      var data = JSON.parse(event.data);
      document.getElementById("wb-at").textContent = data.at;
      document.getElementById("wb-calls").textContent = data.total.calls;
      document.getElementById("wb-talk").textContent = data.total.talk;
      document.getElementById("wb-missed").textContent = data.total.missed;
      var body = document.getElementById("wb-rows");
      while (body.firstChild) body.removeChild(body.firstChild);
      data.rows.forEach(function (row) {
        var tr = document.createElement("tr");
        [row.rep, row.calls, row.target_calls === null ? "" : row.target_calls, row.talk,
          row.effective, row.missed, row.on_call ? "\u25cf" : ""].forEach(function (value) {
          var td = document.createElement("td");
          td.textContent = String(value);
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    });
  }
})();
