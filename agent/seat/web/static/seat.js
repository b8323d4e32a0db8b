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
  var api = body.getAttribute("data-api");
  var rep = body.getAttribute("data-rep") || "";
  var seat = body.getAttribute("data-seat") || "";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var calls = {};          // uuid -> latest call dict
  var cardUuid = null;     // the call the card shows
  var cardData = null;     // what /api/card said about it
  var cardAsked = 0;       // the latest /api/card request: an older answer arriving late is dropped
  var dialLines = [];
  var incomingUuid = null; // a new call held back in the banner while the rep has an unsaved note
  var ACTIVE = { ringing: true, dialing: true, talking: true };

  function t(key, values) {
    var text = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    if (values) {
      Object.keys(values).forEach(function (name) { text = text.split("{" + name + "}").join(String(values[name])); });
    }
    return text;
  }

  function $(id) { return document.getElementById(id); }

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
    // As people here write it (136 1332 3868); the digits as sent when it is not a valid number.
    if (call.number_display) return { text: call.number_display, placeholder: false };
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
    li.tabIndex = 0;
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
    var customerName = call.customer_name || (call.customer && call.customer.name);
    if (customerName) {
      var customer = el("span", "call-customer");
      customer.appendChild(el("span", "label", t("customer")));
      customer.appendChild(document.createTextNode(" " + customerName));
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
    var previous = calls[call.uuid];
    calls[call.uuid] = call;
    popCard(call, previous);
    if (repState) renderRepState(repState);
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

  // -- the caller card ----------------------------------------------------------------

  function request(method, url, payload) {
    var options = { method: method, cache: "no-store", headers: { "Accept": "application/json" } };
    if (payload !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(payload);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.error || String(response.status));
          error.status = response.status;
          error.doNotCall = data.do_not_call === true;
          throw error;
        }
        return data;
      });
    });
  }

  function isActive(call) {
    return ACTIVE[statusKey(call).split(".")[1]] === true;
  }

  // -- draft notes: what the rep typed and has not saved, kept by the browser per call ------

  // localStorage outlives a reload, the agent's restart and the browser's; a draft goes when
  // its note is saved, or after DRAFT_DAYS.
  var DRAFT_PREFIX = "cti-seat-draft:" + seat + ":";
  var DRAFT_DAYS = 7;

  function readDraft(uuid) {
    try {
      var raw = window.localStorage.getItem(DRAFT_PREFIX + uuid);
      var draft = raw ? JSON.parse(raw) : null;
      return draft && typeof draft.notes === "string" ? draft : null;
    } catch (e) { return null; }
  }

  function writeDraft() {
    if (!cardUuid) return;
    var draft = { notes: $("note-text").value, follow_up: $("note-follow-up").value, at: Date.now() };
    try { window.localStorage.setItem(DRAFT_PREFIX + cardUuid, JSON.stringify(draft)); } catch (e) { /* full or off: the box keeps it */ }
  }

  function dropDraft(uuid) {
    try { window.localStorage.removeItem(DRAFT_PREFIX + uuid); } catch (e) { /* nothing kept */ }
  }

  function draftUuids() {
    var out = [];
    try {
      for (var i = 0; i < window.localStorage.length; i++) {
        var key = window.localStorage.key(i);
        if (key && key.indexOf(DRAFT_PREFIX) === 0) out.push(key.slice(DRAFT_PREFIX.length));
      }
    } catch (e) { /* no storage */ }
    return out;
  }

  function pruneDrafts() {
    var oldest = Date.now() - DRAFT_DAYS * 86400000;
    draftUuids().forEach(function (uuid) {
      var draft = readDraft(uuid);
      if (!draft || !(draft.at >= oldest)) dropDraft(uuid);
    });
  }

  function unsaved() {
    return cardUuid !== null && $("note-text").getAttribute("data-dirty") === "1";
  }

  function noteTyped() {
    $("note-text").setAttribute("data-dirty", "1");
    writeDraft();
  }

  // Put a kept draft back in the note box (the box is empty: the card has just switched).
  function restoreDraft(uuid) {
    var draft = readDraft(uuid);
    if (!draft) return false;
    $("note-text").value = draft.notes;
    $("note-follow-up").value = draft.follow_up || "";
    $("note-text").setAttribute("data-dirty", "1");
    $("note-status").textContent = t("note.draft_restored");
    $("note-status").setAttribute("data-state", "draft");
    return true;
  }

  // -- the banner: a new call that waits while the rep finishes a note ---------------------

  function showIncoming(call) {
    incomingUuid = call.uuid;
    var number = numberText(call);
    var who = call.customer_name || (call.customer && call.customer.name) || number.text;
    $("incoming-text").textContent = t(call.direction === "out" ? "incoming.outbound" : "incoming.inbound", { who: who });
    $("incoming").setAttribute("data-uuid", call.uuid);
    $("incoming").hidden = false;
  }

  function hideIncoming() {
    incomingUuid = null;
    $("incoming").hidden = true;
    $("incoming").removeAttribute("data-uuid");
  }

  // A new call, or the card's call changing: shown at once from the event itself.
  function popCard(call, previous) {
    if (call.uuid === incomingUuid) { showIncoming(call); return; }
    var current = cardUuid ? calls[cardUuid] : null;
    var take = call.uuid === cardUuid || !current || (!previous && isActive(call)) || (!isActive(current) && isActive(call));
    if (!take) return;
    var changed = call.uuid !== cardUuid;
    // Never swap the card under a note being written: the new call waits in the banner.
    if (changed && unsaved()) { showIncoming(call); return; }
    cardUuid = call.uuid;
    if (changed) clearCard();
    renderCard();
    var hadCustomer = previous && (previous.customer || previous.customer_name);
    var hasCustomer = call.customer || call.customer_name;
    var numberCame = call.number_raw && !(previous && previous.number_raw);
    if (changed || numberCame || (hasCustomer && !hadCustomer) || (call.disposition && !(previous && previous.disposition))) {
      loadCard(call.uuid);
    }
    document.dispatchEvent(new CustomEvent("cti:pop", { detail: { uuid: call.uuid } }));
  }

  function clearCard() {
    cardData = null;
    $("note-text").value = "";
    $("note-text").removeAttribute("data-dirty");
    $("note-follow-up").value = "";
    $("note-status").textContent = "";
    $("note-status").removeAttribute("data-state");
    if (cardUuid === incomingUuid) hideIncoming();
    if (cardUuid) restoreDraft(cardUuid);
  }

  function selectCall(uuid) {
    if (!calls[uuid]) return;
    if (uuid === cardUuid) return;  // the same card: keep what is being typed
    cardUuid = uuid;
    clearCard();
    renderCard();
    loadCard(uuid);
  }

  function loadCard(uuid) {
    var asked = ++cardAsked;
    request("GET", api + "/card/" + encodeURIComponent(uuid)).then(function (data) {
      // The number and then the customer each ask for the card; the answers may cross.
      if (uuid !== cardUuid || asked !== cardAsked) return;
      cardData = data;
      dialLines = data.dial_lines || dialLines;
      renderCard();
      var note = data.note || {};
      var text = $("note-text");
      var draft = readDraft(uuid);
      if (draft && draft.notes === (note.notes || "") && (draft.follow_up || "") === (note.follow_up || "")) {
        dropDraft(uuid);  // saved after all (the answer to the save was lost)
        text.removeAttribute("data-dirty");
        $("note-status").textContent = "";
      }
      if (document.activeElement !== text && !text.getAttribute("data-dirty")) {
        text.value = note.notes || "";
        $("note-follow-up").value = note.follow_up || "";
      }
    }).catch(function () { /* the card keeps what the event said */ });
  }

  function dialButton(number) {
    if (!dialLines.length || !number) return null;
    var button = el("button", "dial", t("dial"));
    button.type = "button";
    button.title = t("dial.on", { line: dialLines[0] });
    button.setAttribute("data-number", number);
    button.addEventListener("click", function () { dial(number, button); });
    return button;
  }

  function dial(number, button, confirmed) {
    button.disabled = true;
    var body = { line: dialLines[0], number: number };
    if (confirmed) body.confirm_do_not_call = true;
    request("POST", api + "/dial", body).then(function () {
      button.textContent = t("dial.started");
    }).catch(function (error) {
      // On the do-not-call list: only after the rep says so (the centre flags the call anyway).
      if (error.status === 409 && error.doNotCall && !confirmed) {
        button.disabled = false;
        if (window.confirm(t("dial.do_not_call"))) dial(number, button, true);
        return;
      }
      button.textContent = t("dial.failed");
      button.title = error.message;
    }).then(function () {
      setTimeout(function () { button.disabled = false; button.textContent = t("dial"); }, 3000);
    });
  }

  function renderCard() {
    var card = $("card");
    var call = cardUuid ? calls[cardUuid] : null;
    if (!call) { card.hidden = true; return; }
    card.hidden = false;
    card.setAttribute("data-uuid", call.uuid);
    card.setAttribute("data-direction", call.direction);
    $("card-heading").textContent = t(call.direction === "out" ? "card.title_out" : "card.title");
    var number = numberText(call);
    var numberEl = $("card-number");
    numberEl.textContent = number.text;
    numberEl.className = "card-number" + (number.placeholder ? " placeholder" : "");
    $("card-status").textContent = t(statusKey(call)) + " · " + t("direction." + call.direction);
    $("card-line").textContent = call.line ? t("line") + " " + call.line : "";
    var dialEl = $("card-dial");
    dialEl.textContent = "";
    var button = number.placeholder ? null : dialButton(call.number_e164 || call.number_raw);
    if (button) dialEl.appendChild(button);

    var customer = (cardData && cardData.customer) || call.customer || null;
    var name = (customer && customer.name) || call.customer_name || "";
    var lookedUp = cardData !== null || call.disposition;
    card.setAttribute("data-customer", name ? "known" : (number.placeholder ? "none" : (lookedUp ? "unknown" : "pending")));
    $("card-name").textContent = name || (number.placeholder || lookedUp ? "" : t("card.looking_up"));
    $("card-unknown").hidden = !!name || number.placeholder || !lookedUp;
    if (call.cid_name && call.cid_name !== name) {
      var cid = el("span", "card-cid", call.cid_name);
      cid.title = t("caller");
      $("card-name").appendChild(document.createTextNode(" "));
      $("card-name").appendChild(cid);
    }
    $("card-company").textContent = (customer && customer.company) || "";
    // The centre's card says whether the customer is owned or in the pool; other sources say nothing.
    var standing = { owned: t("card.status.owned"), pool: t("card.status.pool") };
    var status = customer && Object.prototype.hasOwnProperty.call(standing, customer.status) ? standing[customer.status] : "";
    $("card-owner").textContent = [(customer && customer.owner_rep) || "", status].filter(Boolean).join(" · ");
    var tags = $("card-tags");
    tags.textContent = "";
    ((customer && customer.tags) || []).forEach(function (tag) { tags.appendChild(el("span", "tag", tag)); });
    $("card-customer-notes").textContent = (customer && customer.notes) || "";
    // Team mode: who owns the number across the floor, even when the customer is another team's.
    var ownership = cardData && cardData.ownership;
    var owner = (customer && customer.owner_rep) || (ownership && ownership.owner_rep);
    var conflict = $("card-conflict");
    conflict.hidden = !(owner && rep && owner !== rep);
    conflict.textContent = conflict.hidden ? "" : t("card.owned_by", { rep: owner });
    var standingEl = $("card-ownership");
    standingEl.hidden = !ownership;
    standingEl.setAttribute("data-state", ownership ? ownership.state : "");
    if (ownership) {
      var who = ownership.owner_rep ? ownership.owner_rep + (ownership.owner_team ? " (" + ownership.owner_team + ")" : "") : "";
      var until = ownership.until ? new Date(ownership.until).toLocaleDateString() : "";
      standingEl.textContent = t("ownership." + ownership.state, { who: who, date: until }) +
        (ownership.may_claim ? " " + t("ownership.may_claim") : "");
    }

    var claim = cardData && cardData.claim;
    var claimRow = $("card-claim-row");
    claimRow.hidden = !claim || claim.reason === "yours";
    $("card-claim").hidden = !(claim && claim.claimable);
    if (claim && !claimRow.hidden) {
      var claimText = "";
      if (claim.reason === "protected" && claim.protected_until) {
        claimText = t("claim.protected", { date: new Date(claim.protected_until).toLocaleDateString() });
      } else if (claim.reason === "limit") {
        claimText = t("claim.limit");
      } else {
        claimText = t("claim.left", { n: claim.claims_left });
      }
      $("card-claim-status").textContent = claimText;
    }

    var history = (cardData && cardData.history) || [];
    var table = $("card-history");
    var tbody = table.querySelector("tbody");
    tbody.textContent = "";
    history.forEach(function (h) {
      var tr = document.createElement("tr");
      var when = el("td", "history-date", h.started_at ? new Date(h.started_at).toLocaleString() : "");
      // A call from another seat of the team (the centre's card) says whose it was.
      if (h.seat) when.appendChild(el("span", "history-by", " · " + t("history.by", { rep: h.rep || h.seat })));
      tr.appendChild(when);
      tr.appendChild(el("td", "history-direction", t("direction." + h.direction)));
      tr.appendChild(el("td", "history-outcome", h.disposition ? t("disposition." + h.disposition) : ""));
      var talk = el("td", "history-talk", duration(h.talk_seconds));
      var play = playLink(h);
      if (play) {
        talk.appendChild(document.createTextNode(" "));
        talk.appendChild(play);
      }
      tr.appendChild(talk);
      var notes = el("td", "history-notes", h.notes);
      if (h.follow_up) notes.appendChild(el("span", "history-follow-up", " → " + h.follow_up));
      tr.appendChild(notes);
      tbody.appendChild(tr);
    });
    table.hidden = history.length === 0;
    $("card-no-history").hidden = history.length > 0;
  }

  // The console's page of an earlier call, where its recording plays and the console checks the
  // user's role. The API builds the URL from [web] console_url and a validated UUID; only an
  // http(s) URL becomes a link, so a stray value can never be a javascript: href.
  function playLink(h) {
    if (!h.has_recording || typeof h.play_url !== "string" || !/^https?:\/\//.test(h.play_url)) return null;
    var a = el("a", "history-play", t("history.play"));
    a.href = h.play_url;
    a.target = "_blank";
    a.rel = "noopener";
    a.title = t("history.play_title");
    return a;
  }

  function saveNote(event) {
    event.preventDefault();
    if (!cardUuid) return;
    var uuid = cardUuid;
    var status = $("note-status");
    status.textContent = "";
    var sent = { notes: $("note-text").value, follow_up: $("note-follow-up").value };
    request("POST", api + "/calls/" + encodeURIComponent(uuid) + "/note", sent).then(function () {
      if (uuid !== cardUuid) { dropDraft(uuid); return; }
      if ($("note-text").value !== sent.notes || $("note-follow-up").value !== sent.follow_up) return;  // typed on
      dropDraft(uuid);
      $("note-text").removeAttribute("data-dirty");
      status.textContent = t("note.saved");
      status.setAttribute("data-state", "saved");
      loadToday();
    }).catch(function (error) {
      status.textContent = t("note.failed") + ": " + error.message;
      status.setAttribute("data-state", "failed");
    });
  }

  // -- today: counts against targets, due follow-ups -----------------------------------

  function loadToday() {
    request("GET", api + "/today").then(renderToday).catch(function () {});
  }

  function renderToday(data) {
    dialLines = data.dial_lines || dialLines;
    var counts = data.counts || {};
    var targets = data.targets || {};
    var list = $("today-counts");
    list.textContent = "";
    [["count.calls", counts.calls, targets.calls, String],
     ["count.answered", counts.answered, null, String],
     ["count.missed", counts.missed, null, String],
     ["count.effective", counts.effective_calls, targets.effective_calls, String],
     ["count.talk", counts.talk_seconds, targets.talk_seconds, duration]].forEach(function (item) {
      if (item[1] === undefined || item[1] === null) return;
      var li = el("li", "count");
      li.appendChild(el("span", "label", t(item[0])));
      li.appendChild(document.createTextNode(" "));
      var value = el("span", "value", item[3](item[1]));
      li.appendChild(value);
      if (item[2] !== undefined && item[2] !== null) {
        li.appendChild(el("span", "target", " / " + item[3](item[2])));
        if (item[1] >= item[2]) li.setAttribute("data-met", "true");
      }
      list.appendChild(li);
    });
    var follow = $("follow-ups");
    follow.textContent = "";
    (data.follow_ups || []).forEach(function (f) {
      var li = el("li", "follow-up");
      li.appendChild(el("span", "follow-up-due", f.due + (f.overdue ? " (" + t("today.overdue") + ")" : "")));
      li.appendChild(el("span", "follow-up-name", f.name));
      li.appendChild(el("span", "follow-up-number", f.number_display || f.number));
      li.appendChild(el("span", "follow-up-notes", f.notes));
      var button = dialButton(f.number_e164 || f.number);
      if (button) li.appendChild(button);
      if (f.overdue) li.setAttribute("data-overdue", "true");
      follow.appendChild(li);
    });
    $("no-follow-ups").hidden = follow.children.length > 0;
    if (cardUuid) renderCard();
  }

  // -- rep state ----------------------------------------------------------------------

  var repState = null;

  function renderRepState(state) {
    if (!state) return;
    repState = state;
    var section = $("rep-state");
    section.hidden = false;
    section.setAttribute("data-state", state.state);
    // Not answered yet, a call is no state of the rep's own; the page still says the line is busy.
    var line = state.state === "on_call" ? null : lineActivity();
    section.setAttribute("data-line", line || "");
    var text = t("rep_state." + (line || state.state));
    if (state.reason && !line) text += " · " + t("pause." + state.reason);
    $("rep-state-now").textContent = text;
    var select = $("rep-pause-reason");
    if (state.pause_reasons && select.children.length === 0) {
      state.pause_reasons.forEach(function (code) {
        var option = el("option", null, t("pause." + code));
        option.value = code;
        select.appendChild(option);
      });
    }
    var onCall = state.state === "on_call";
    $("rep-available").disabled = onCall || state.state === "available";
    $("rep-pause").disabled = onCall;
    tickRepState();
  }

  // "ringing" or "dialing" while one of the seat's calls is, unanswered; else null.
  function lineActivity() {
    var found = null;
    Object.keys(calls).forEach(function (uuid) {
      var call = calls[uuid];
      if (call.disposition || call.answered_at || call.ended_at) return;
      found = call.direction === "out" ? (found || "dialing") : "ringing";
    });
    return found;
  }

  function tickRepState() {
    if (repState) $("rep-state-elapsed").textContent = duration(since(repState.since));
  }

  function chooseRepState(state, reason) {
    $("rep-state-error").textContent = "";
    request("POST", api + "/rep-state", { state: state, reason: reason }).then(renderRepState).catch(function (error) {
      $("rep-state-error").textContent = error.message;
    });
  }

  $("rep-available").addEventListener("click", function () { chooseRepState("available", null); });
  $("rep-pause").addEventListener("click", function () { chooseRepState("paused", $("rep-pause-reason").value); });

  callsEl.addEventListener("click", function (event) {
    var row = event.target.closest ? event.target.closest(".call") : null;
    if (row) selectCall(row.getAttribute("data-uuid"));
  });
  callsEl.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" && event.key !== " ") return;
    var row = event.target.closest ? event.target.closest(".call") : null;
    if (row) { event.preventDefault(); selectCall(row.getAttribute("data-uuid")); $("note-text").focus(); }
  });
  $("note-form").addEventListener("submit", saveNote);
  $("card-claim").addEventListener("click", function () {
    var customer = cardData && cardData.customer;
    if (!customer || customer.id === null || customer.id === undefined) return;
    var uuid = cardUuid;
    request("POST", api + "/customers/" + encodeURIComponent(customer.id) + "/claim", {}).then(function () {
      $("card-claim-status").textContent = t("claim.done");
      loadCard(uuid);
    }).catch(function (error) {
      $("card-claim-status").textContent = t("claim.failed") + ": " + error.message;
    });
  });
  $("note-text").addEventListener("input", noteTyped);
  $("note-follow-up").addEventListener("input", noteTyped);
  $("note-follow-up").addEventListener("change", noteTyped);
  $("incoming-open").addEventListener("click", function () {
    var uuid = incomingUuid;
    hideIncoming();
    if (uuid) selectCall(uuid);  // the draft stays with its call, offered back when it is opened
  });
  // Alt+N jumps to the note box from anywhere.
  document.addEventListener("keydown", function (event) {
    if (event.altKey && (event.key === "n" || event.key === "N") && !$("card").hidden) {
      event.preventDefault();
      $("note-text").focus();
    }
  });

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

  // -- the status area: parked records ----------------------------------------------

  // What could not be stored or sent and waits for IT ("/api/state" carries the runtime's counts).
  var PARKED = [["storage_parked", "parked-storage", "parked.storage"], ["sync_parked", "parked-sync", "parked.sync"]];

  function renderParked(state) {
    var any = false;
    PARKED.forEach(function (item) {
      var count = state[item[0]] || 0;
      var span = $(item[1]);
      span.hidden = count <= 0;
      if (count > 0) { span.textContent = t(item[2], { count: count }); any = true; }
    });
    $("parked").hidden = !any;
  }

  function loadParked() {
    request("GET", stateUrl).then(renderParked).catch(function (error) {
      // A network session that ended (log-out elsewhere, a new password, a restart): back to the log-in.
      if (error.status === 401) window.location.reload();
    });
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
    source.addEventListener("call", handle(function (payload) {
      upsertCall(payload.call);
      if (payload.kind === "ended") { loadToday(); loadWorklist(); }
    }));
    source.addEventListener("line", handle(upsertLine));
    source.addEventListener("rep", handle(function (change) {
      renderRepState(Object.assign({}, repState || {}, change));
    }));
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

  // -- the worklist: the rep's leads from the centre, a result after each call, the next lead --

  var worklist = null;     // what /api/worklist said
  var workLead = null;     // the lead the result form is for

  function loadWorklist() {
    return request("GET", api + "/worklist").then(renderWorklist).catch(function () {});
  }

  function dispositionLabel(d) {
    return (document.documentElement.lang || "").indexOf("zh") === 0 ? d.zh : d.en;
  }

  function renderWorklist(data) {
    worklist = data;
    var section = $("worklist");
    if (!data.available) { section.hidden = true; return; }
    section.hidden = false;
    if (data.dial_lines) dialLines = data.dial_lines;
    var status = [];
    if (data.rep_active === false) status.push(t("worklist.inactive"));
    if (data.offline) status.push(t("worklist.offline"));
    if (data.pending) status.push(t("worklist.pending", { n: data.pending }));
    $("worklist-status").textContent = status.join(" ");
    var conflicts = $("worklist-conflicts");
    conflicts.textContent = "";
    (data.conflicts || []).forEach(function (c) {
      conflicts.appendChild(el("span", "conflict", t("worklist.conflict", { lead: c.lead_id, reason: c.conflict })));
    });
    conflicts.hidden = !(data.conflicts || []).length;
    var list = $("worklist-items");
    list.textContent = "";
    var items = data.items || [];
    $("worklist-empty").hidden = items.length > 0;
    items.forEach(function (item) { list.appendChild(workRow(item)); });
    var still = workLead && items.filter(function (i) { return i.lead_id === workLead.lead_id; })[0];
    showDisposition(still || items[0] || null);
  }

  function workRow(item) {
    var li = el("li", "work-item");
    li.setAttribute("data-lead", String(item.lead_id));
    li.setAttribute("data-reason", item.reason);
    var who = el("span", "work-name", item.name || item.company || (item.numbers_display || [])[0] || "");
    li.appendChild(who);
    if (item.company && item.name) li.appendChild(el("span", "work-company", item.company));
    var number = (item.numbers_display || [])[0];
    if (number) li.appendChild(el("span", "work-number", number));
    li.appendChild(el("span", "work-reason", t("worklist.reason." + item.reason)));
    if (item.due_at) li.appendChild(el("span", "work-due", t("worklist.due", { time: clock(item.due_at).slice(0, 5) })));
    if (item.premium) li.appendChild(el("span", "work-premium", t("worklist.premium")));
    var dialNumber = (item.numbers || [])[0];
    var button = dialButton(dialNumber);
    if (button) {
      button.addEventListener("click", function () { showDisposition(item); });
      li.appendChild(button);
    }
    var record = el("button", "work-record", t("worklist.record"));
    record.type = "button";
    record.addEventListener("click", function () { showDisposition(item); });
    li.appendChild(record);
    return li;
  }

  function showDisposition(item) {
    var form = $("disposition-form");
    workLead = item;
    Array.prototype.forEach.call(document.querySelectorAll(".work-item"), function (li) {
      li.classList.toggle("current", item !== null && li.getAttribute("data-lead") === String(item.lead_id));
    });
    if (!item) { form.hidden = true; return; }
    form.hidden = false;
    $("disposition-heading").textContent = t("disposition.title", {
      name: item.name || item.company || (item.numbers_display || [])[0] || ""
    });
    var select = $("disposition-code");
    var chosen = select.value;
    select.textContent = "";
    (worklist.dispositions || []).forEach(function (d) {
      var option = el("option", null, dispositionLabel(d));
      option.value = d.code;
      option.setAttribute("data-follow-up", d.follow_up ? "1" : "");
      select.appendChild(option);
    });
    if (chosen) select.value = chosen;
    followUpShown();
  }

  function followUpShown() {
    var option = $("disposition-code").selectedOptions[0];
    var needed = !!(option && option.getAttribute("data-follow-up"));
    $("disposition-follow-up").hidden = !needed;
    $("disposition-follow-up-label").hidden = !needed;
    $("disposition-follow-up").required = needed;
  }

  function lastCallTo(item) {
    // The latest call on this seat to or from one of the lead's numbers: the call the result is of.
    var numbers = item.numbers || [];
    var found = null;
    Object.keys(calls).forEach(function (uuid) {
      var call = calls[uuid];
      if (numbers.indexOf(call.number_e164) < 0) return;
      if (!found || String(call.started_at) > String(found.started_at)) found = call;
    });
    return found;
  }

  function saveDisposition(event) {
    event.preventDefault();
    if (!workLead) return;
    var item = workLead;
    var call = lastCallTo(item);
    var followUp = $("disposition-follow-up");
    var payload = {
      lead_id: item.lead_id,
      customer_id: item.customer_id,
      code: $("disposition-code").value,
      note: $("disposition-note").value,
      follow_up_at: followUp.hidden ? null : followUp.value,
      call_uuid: call ? call.uuid : null
    };
    var status = $("disposition-status");
    var button = $("disposition-save");
    button.disabled = true;
    request("POST", api + "/dispositions", payload).then(function () {
      status.textContent = t("disposition.saved");
      $("disposition-note").value = "";
      followUp.value = "";
      workLead = null;
      return loadWorklist();
    }).catch(function (error) {
      status.textContent = t("disposition.failed", { error: error.message });
    }).then(function () { button.disabled = false; });
  }

  $("disposition-form").addEventListener("submit", saveDisposition);
  $("disposition-code").addEventListener("change", followUpShown);

  tick();
  setInterval(tick, 1000);
  // The rows rendered by the server: fetch their data so they can be opened in the card.
  pruneDrafts();
  request("GET", stateUrl).then(function (state) {
    state.calls.forEach(function (call) { if (!calls[call.uuid]) calls[call.uuid] = call; });
    // A reload rebuilds the card: the call in progress, else the latest call with an unsaved note.
    if (!cardUuid) {
      var open = state.calls.filter(isActive)[0];
      if (!open) {
        var drafts = draftUuids();
        open = state.calls.filter(function (call) { return drafts.indexOf(call.uuid) >= 0; })[0];
      }
      if (open) {
        cardUuid = open.uuid;
        clearCard();
        renderCard();
        loadCard(open.uuid);
      }
    }
    if (state.rep_state) renderRepState(state.rep_state);
    renderParked(state);
  }).catch(function () {});
  setInterval(loadParked, 30000);
  setInterval(tickRepState, 1000);
  loadToday();
  loadWorklist();
  setInterval(loadWorklist, 30000);
  connect();
})();
