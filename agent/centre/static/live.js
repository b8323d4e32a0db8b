// Live listen-in: fetch the console's PCM stream and play it with the Web Audio API.
// The stream is 16-bit little-endian mono at 8 kHz (audio/L16). Each piece read is turned
// into an AudioBuffer and scheduled right after the previous one, behind a small jitter
// buffer; when the schedule runs too far ahead (a stall, then a burst) audio is dropped so
// the delay stays under a second.
"use strict";

(function () {
  var RATE = 8000;
  var JITTER = 0.2; // seconds of audio queued before the first piece plays
  var MAX_AHEAD = 0.8; // never schedule further ahead than this

  var status = document.getElementById("listen-status");
  if (!status) return;
  var current = null; // {button, controller, context}

  function say(state) {
    status.dataset.state = state;
    status.textContent = status.dataset["t" + state.charAt(0).toUpperCase() + state.slice(1)] || state;
  }

  function stop(state) {
    if (!current) return;
    var was = current;
    current = null;
    was.controller.abort();
    was.context.close();
    was.button.textContent = status.dataset.tListen;
    was.button.classList.remove("active");
    if (was.timer) clearInterval(was.timer);
    say(state || "idle");
  }

  function listen(button) {
    var AudioContextClass = window.AudioContext || window.webkitAudioContext;
    var context = new AudioContextClass();
    var controller = new AbortController();
    var session = { button: button, controller: controller, context: context, timer: null };
    current = session;
    button.textContent = status.dataset.tStop;
    button.classList.add("active");
    say("connecting");
    var next = 0;
    var carry = null; // an odd byte left from the previous read
    var scheduled = 0;

    function play(bytes) {
      if (carry !== null) {
        var joined = new Uint8Array(bytes.length + 1);
        joined[0] = carry;
        joined.set(bytes, 1);
        bytes = joined;
        carry = null;
      }
      if (bytes.length % 2) {
        carry = bytes[bytes.length - 1];
        bytes = bytes.subarray(0, bytes.length - 1);
      }
      var frames = bytes.length / 2;
      if (!frames) return;
      var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
      var buffer = context.createBuffer(1, frames, RATE);
      var samples = buffer.getChannelData(0);
      for (var i = 0; i < frames; i++) samples[i] = view.getInt16(i * 2, true) / 32768;
      var now = context.currentTime;
      if (next < now) next = now + JITTER; // first piece, or we ran dry: rebuild the cushion
      if (next - now > MAX_AHEAD) return; // too far behind real time: drop rather than lag
      var source = context.createBufferSource();
      source.buffer = buffer;
      source.connect(context.destination);
      source.start(next);
      next += buffer.duration;
      scheduled += 1;
      if (scheduled === 1) {
        status.dataset.firstScheduledAt = String(now);
        say("playing");
      }
      status.dataset.scheduled = String(scheduled);
    }

    session.timer = setInterval(function () {
      status.dataset.currentTime = String(context.currentTime);
    }, 200);

    context.resume().catch(function () {});
    fetch(button.dataset.audio, { credentials: "same-origin", cache: "no-store", signal: controller.signal })
      .then(function (response) {
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        var reader = response.body.getReader();
        function pump() {
          return reader.read().then(function (result) {
            if (current !== session) return;
            if (result.done) {
              stop("ended");
              return;
            }
            play(result.value);
            return pump();
          });
        }
        return pump();
      })
      .catch(function () {
        if (current === session) stop("failed");
      });
  }

  document.querySelectorAll("button.listen").forEach(function (button) {
    button.addEventListener("click", function () {
      var same = current && current.button === button;
      stop();
      if (!same) listen(button);
    });
  });

  // Tick the elapsed times on the page.
  var started = Date.now();
  var cells = Array.prototype.slice.call(document.querySelectorAll("td.elapsed, td.state .since"));
  setInterval(function () {
    var passed = Math.floor((Date.now() - started) / 1000);
    cells.forEach(function (cell) {
      var total = parseInt(cell.dataset.seconds, 10) + passed;
      var h = Math.floor(total / 3600);
      var m = Math.floor((total % 3600) / 60);
      var s = total % 60;
      var pad = function (n) { return (n < 10 ? "0" : "") + n; };
      cell.textContent = h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
    });
  }, 1000);
})();
