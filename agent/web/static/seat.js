// The seat page's live updates: Server-Sent Events from /events, rows updated in place by call uuid.
// Everything from a caller (number, name) is set with textContent, never parsed as HTML.
(function () {
  "use strict";

  var MAX_CALLS = 200;
  var BUSY = { ringing: true, dialing: true, talking: true };

  var body = document.body;
  var strings = JSON.parse(document.getElementById("strings").textContent);
  var linesEl = document.getElementById("lines");
  var callsEl = document.getElementById("calls");
  var connectionEl = document.getElementById("connection");
  var eventsUrl = body.getAttribute("data-events-url");
  var stateUrl = body.getAttribute("data-state-url");
  var lastId = parseInt(body.getAttribute("data-last-id"), 10) || 0;
  var source = null;

  function t(key) {
    return Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  // Same format as format_duration() in app.py: m:ss, or h:mm:ss from an hour.
  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "";
    var total = Math.max(Math.floor(seconds), 0);
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  function clock(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function since(iso) {
    var then = Date.parse(iso);
    return isNaN(then) ? null : (Date.now() - then) / 1000;
  }

  function numberText(call) {
    if (call.number_raw) return { text: call.number_raw, placeholder: false };
    if (call.absence === "P") return { text: t("number.withheld"), placeholder: true };
    if (call.absence === "O") return { text: t("number.unavailable"), placeholder: true };
    return { text: t("number.unknown"), placeholder: true };
  }

  function statusKey(call) {
    if (call.disposition) return "disposition." + call.disposition;
    if (call.answered_at) return "state.talking";
    return call.direction === "in" ? "state.ringing" : "state.dialing";
  }

  function labelled(className, label, value) {
    var span = el("span", className);
    span.appendChild(el("span", "label", t(label)));
    span.appendChild(document.createTextNode(" "));
    span.appendChild(el("span", "value", value));
    return span;
  }

  function callRow(call) {
    var key = statusKey(call);
    var li = el("li", "call");
    li.setAttribute("data-uuid", call.uuid);
    li.setAttribute("data-status", key.split(".")[1]);
    li.setAttribute("data-direction", call.direction || "");
    li.setAttribute("data-started", call.started_at || "");
    li.setAttribute("data-answered", call.answered_at || "");

    var head = el("div", "call-head");
    var time = el("time", "call-time", clock(call.started_at));
    time.setAttribute("datetime", call.started_at || "");
    head.appendChild(time);
    head.appendChild(el("span", "call-line", call.line));
    head.appendChild(el("span", "call-direction", t("direction." + call.direction)));
    head.appendChild(el("span", "call-status", t(key)));
    if (call.waiting) head.appendChild(el("span", "call-waiting", t("waiting")));
    li.appendChild(head);

    var who = el("div", "call-who");
    var number = numberText(call);
    who.appendChild(el("span", "call-number" + (number.placeholder ? " placeholder" : ""), number.text));
    if (call.cid_name) {
      var name = el("span", "call-name", call.cid_name);
      name.title = t("caller");
      who.appendChild(name);
    }
    if (call.customer_name) {
      var customer = el("span", "call-customer");
      customer.appendChild(el("span", "label", t("customer")));
      customer.appendChild(document.createTextNode(" " + call.customer_name));
      who.appendChild(customer);
    }
    li.appendChild(who);

    var times = el("div", "call-times");
    times.appendChild(labelled("call-ring", "ring", duration(call.ring_seconds)));
    times.appendChild(labelled("call-talk", "talk", duration(call.talk_seconds)));
    li.appendChild(times);
    return li;
  }

  function findByAttr(parent, attr, value) {
    var children = parent.children;
    for (var i = 0; i < children.length; i++) {
      if (children[i].getAttribute(attr) === value) return children[i];
    }
    return null;
  }

  function upsertCall(call) {
    var row = callRow(call);
    var existing = findByAttr(callsEl, "data-uuid", call.uuid);
    if (existing) {
      callsEl.replaceChild(row, existing);
    } else {
      callsEl.insertBefore(row, callsEl.firstChild);
      while (callsEl.children.length > MAX_CALLS) callsEl.removeChild(callsEl.lastChild);
    }
    document.getElementById("no-calls").hidden = callsEl.children.length > 0;
  }

  function lineRow(status) {
    var li = el("li", "line");
    li.setAttribute("data-line", status.line);
    li.setAttribute("data-state", status.state);
    li.setAttribute("data-since", status.since || "");
    li.appendChild(el("span", "line-id", status.line));
    li.appendChild(el("span", "line-state", t("state." + status.state)));
    li.appendChild(el("span", "line-elapsed"));
    li.appendChild(el("span", "line-rep", status.rep));
    return li;
  }

  function upsertLine(status) {
    var row = lineRow(status);
    var existing = findByAttr(linesEl, "data-line", status.line);
    if (existing) linesEl.replaceChild(row, existing);
    else linesEl.appendChild(row);
    document.getElementById("no-lines").hidden = linesEl.children.length > 0;
    tick();
  }

  function replaceAll(state) {
    linesEl.textContent = "";
    callsEl.textContent = "";
    state.lines.forEach(upsertLine);
    // The snapshot is newest first; inserting oldest first keeps that order.
    state.calls.slice().reverse().forEach(upsertCall);
    document.getElementById("no-calls").hidden = state.calls.length > 0;
    document.getElementById("no-lines").hidden = state.lines.length > 0;
    lastId = state.last_id;
  }

  // Running clocks for what is in progress: a ringing call's ring time, a live call's talk time.
  function tick() {
    var rows = callsEl.children;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var status = row.getAttribute("data-status");
      if (!BUSY[status]) continue;
      var started = row.getAttribute("data-started");
      var answered = row.getAttribute("data-answered");
      var ring = row.querySelector(".call-ring .value");
      var talk = row.querySelector(".call-talk .value");
      if (answered) {
        ring.textContent = duration((Date.parse(answered) - Date.parse(started)) / 1000);
        talk.textContent = duration(since(answered));
      } else {
        ring.textContent = duration(since(started));
      }
    }
    var lines = linesEl.children;
    for (var j = 0; j < lines.length; j++) {
      var line = lines[j];
      var elapsed = line.querySelector(".line-elapsed");
      elapsed.textContent = BUSY[line.getAttribute("data-state")] ? duration(since(line.getAttribute("data-since"))) : "";
    }
  }

  function setConnection(live) {
    connectionEl.setAttribute("data-state", live ? "live" : "lost");
    connectionEl.textContent = t(live ? "connection.live" : "connection.lost");
  }

  function handle(update) {
    return function (event) {
      if (event.lastEventId) lastId = parseInt(event.lastEventId, 10) || lastId;
      update(JSON.parse(event.data));
    };
  }

  function connect() {
    // The query gives the first connection its starting point; on automatic
    // reconnects the browser sends Last-Event-ID, which the server prefers.
    source = new EventSource(eventsUrl + "?last_event_id=" + encodeURIComponent(lastId));
    source.onopen = function () { setConnection(true); };
    source.onerror = function () { setConnection(false); };
    source.addEventListener("call", handle(function (payload) { upsertCall(payload.call); }));
    source.addEventListener("line", handle(upsertLine));
    // Our position is no longer in the server's replay buffer (or the agent restarted): reload the state.
    source.addEventListener("reset", function () {
      source.close();
      setConnection(false);
      fetch(stateUrl, { cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("state " + response.status);
          return response.json();
        })
        .then(function (state) { replaceAll(state); connect(); })
        .catch(function () { setTimeout(connect, 2000); });
    });
  }

  tick();
  setInterval(tick, 1000);
  connect();
})();
