/*
 * Patchbay web chat widget. A page embeds it with one tag:
 *
 *   <script src="https://gateway.example/webchat/CHANNEL/widget.js" async></script>
 *
 * Optional attributes: data-site-jwt="…" (the site's JWT about a signed-in
 * customer; or window.PatchbayWebchat = {siteJwt: "…"}), data-open="true".
 *
 * What it keeps in localStorage, per Patchbay and channel: the session, the
 * last outbox position shown (`after`), messages not yet acknowledged
 * (`pending`, sent again after a reconnect with the same client_id, which
 * Patchbay dedupes) and the transcript shown after a page reload.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  var src = new URL(script.src, location.href);
  var match = src.pathname.match(/\/webchat\/([^/]+)\/widget\.js$/);
  if (!match) return;
  var channel = decodeURIComponent(match[1]);
  var prefix = src.origin + "/webchat/" + encodeURIComponent(channel);
  var options = window.PatchbayWebchat || {};
  var siteJwt = script.getAttribute("data-site-jwt") || options.siteJwt || null;
  var storeKey = "patchbay-webchat:" + src.origin + ":" + channel;
  var MAX_TRANSCRIPT = 200;

  var state = load();

  // The widget's words: English unless the channel's config says otherwise
  // (the session carries them; the last one's are used until it arrives).
  var ENGLISH = {
    launcher: "Chat", placeholder: "Write a message…", send: "Send", typing: "typing…",
    connecting: "Connecting…", reconnecting: "Reconnecting…",
    unreachable: "Cannot reach the chat; trying again…",
    ended: "The conversation has ended.", not_sent: "Not sent", too_large: "Too large to send here"
  };
  function word(key) {
    var texts = state.session && state.session.texts;
    return (texts && texts[key]) || ENGLISH[key];
  }
  var ws = null;
  var connected = false;
  var backoff = 500;
  var reconnectTimer = null;
  var retryTimer = null;
  var renewTimer = null;
  var typingTimer = null;
  var lastTypingSent = 0;

  // ---- storage -----------------------------------------------------------

  function load() {
    try {
      var saved = JSON.parse(localStorage.getItem(storeKey) || "null");
      if (saved && typeof saved === "object") return saved;
    } catch (e) { /* private mode or corrupt: start afresh */ }
    return { session: null, after: 0, pending: [], transcript: [] };
  }

  function save() {
    state.transcript = state.transcript.slice(-MAX_TRANSCRIPT);
    try { localStorage.setItem(storeKey, JSON.stringify(state)); } catch (e) { /* full */ }
  }

  function newId(prefix) {
    if (window.crypto && crypto.randomUUID) return prefix + crypto.randomUUID();
    return prefix + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // ---- the page ----------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  // Only web and inline-image URLs reach the page: no javascript: links.
  function safeUrl(url, images) {
    if (typeof url !== "string") return null;
    if (/^https?:\/\//i.test(url)) return url;
    if (images && /^data:image\//i.test(url)) return url;
    return null;
  }

  var stylesheet = el("link");
  stylesheet.rel = "stylesheet";
  stylesheet.href = prefix + "/widget.css";
  document.head.appendChild(stylesheet);

  var root = el("div", "pb-webchat");
  var launcher = el("button", "pb-launcher", word("launcher"));
  launcher.type = "button";
  launcher.setAttribute("aria-expanded", "false");
  var panel = el("section", "pb-panel");
  panel.hidden = true;
  panel.setAttribute("aria-label", "Chat");
  var header = el("header", "pb-header");
  var title = el("h2", "pb-title", "Chat");
  var close = el("button", "pb-close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Close the chat");
  header.appendChild(title);
  header.appendChild(close);
  var status = el("div", "pb-status", word("connecting"));
  var log = el("div", "pb-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var typing = el("div", "pb-typing", word("typing"));
  typing.hidden = true;
  var form = el("form", "pb-composer");
  var input = el("input", "pb-input");
  input.type = "text";
  input.placeholder = word("placeholder");
  input.setAttribute("aria-label", "Message");
  input.maxLength = 4000;
  var file = el("input", "pb-file");
  file.type = "file";
  file.hidden = true;
  var attach = el("button", "pb-attach", "+");
  attach.type = "button";
  attach.setAttribute("aria-label", "Attach a file");
  var send = el("button", "pb-send", word("send"));
  send.type = "submit";
  form.appendChild(attach);
  form.appendChild(file);
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(status);
  panel.appendChild(log);
  panel.appendChild(typing);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(launcher);

  function open(show) {
    panel.hidden = !show;
    launcher.hidden = show;
    launcher.setAttribute("aria-expanded", String(show));
    if (show) { input.focus(); scrollDown(); }
  }

  launcher.addEventListener("click", function () { open(true); });
  close.addEventListener("click", function () { open(false); });
  attach.addEventListener("click", function () { file.click(); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    post({ type: "text", text: text }, true);
  });

  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTypingSent > 5000 && input.value) {
      lastTypingSent = now;
      post({ type: "typing", active: true }, false);
    }
  });

  file.addEventListener("change", function () {
    var chosen = file.files && file.files[0];
    file.value = "";
    if (!chosen) return;
    var reader = new FileReader();
    reader.onload = function () {
      post({
        type: "attachments",
        attachments: [{
          url: reader.result,
          filename: chosen.name,
          content_type: chosen.type || "application/octet-stream",
          size: chosen.size
        }]
      }, true);
    };
    reader.readAsDataURL(chosen);
  });

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function setStatus(text) {
    status.textContent = text || "";
    status.hidden = !text;
  }

  // ---- rendering -----------------------------------------------------------

  function bubble(from, text) {
    var row = el("div", "pb-msg pb-" + from);
    if (text != null && text !== "") row.appendChild(el("div", "pb-bubble", text));
    return row;
  }

  function choice(label, onPick) {
    var button = el("button", "pb-choice", label);
    button.type = "button";
    button.addEventListener("click", function () {
      if (button.disabled) return;
      onPick();
    });
    return button;
  }

  function postback(payload, text) {
    post({ type: "postback", payload: payload, text: text }, true);
  }

  // A message's choices answer once: picking one disables them all, and the
  // pick is kept with the transcript, so a reload shows it answered.
  function choices(row, className) {
    var box = el("div", className);
    var owner = rendering;
    row.appendChild(box);
    return function (label, payload, extra) {
      var key = payload + "\u0000" + label;
      var button = choice(label, function () {
        var all = button.closest(".pb-msg").querySelectorAll("button.pb-choice");
        for (var i = 0; i < all.length; i++) all[i].disabled = true;
        button.classList.add("pb-picked");
        if (owner) { owner.picked = key; save(); }
        postback(payload, label);
      });
      if (owner && owner.picked) {
        button.disabled = true;
        if (owner.picked === key) button.classList.add("pb-picked");
      }
      if (extra) extra(button);
      box.appendChild(button);
      return button;
    };
  }

  function linkButton(title, url) {
    var safe = safeUrl(url, false);
    var a = el("a", "pb-choice pb-link", title);
    if (safe) { a.href = safe; a.target = "_blank"; a.rel = "noopener noreferrer"; }
    return a;
  }

  function buttonsInto(container, buttons, add) {
    (buttons || []).forEach(function (b) {
      var action = b.action || {};
      if (action.type === "link") container.appendChild(linkButton(b.title, action.url));
      else add(b.title, action.payload);
    });
  }

  function attachmentNode(a) {
    var image = (a.content_type || "").indexOf("image/") === 0 ||
      /\.(png|jpe?g|gif|webp)(\?|$)/i.test(a.url || "");
    var url = safeUrl(a.url, image);
    if (image && url) {
      var img = el("img", "pb-image");
      img.src = url;
      img.alt = a.filename || "image";
      return img;
    }
    var link = el("a", "pb-file-link", a.filename || "file");
    if (url) { link.href = url; link.target = "_blank"; link.rel = "noopener noreferrer"; }
    if (a.filename) link.download = a.filename;
    return link;
  }

  // The entry being rendered (its choices record their pick on it).
  var rendering = null;

  function render(entry, from) {
    rendering = entry;
    var c = entry.content || {};
    var row;
    switch (c.type) {
      case "text":
        row = bubble(from, c.text);
        break;
      case "attachments":
        row = bubble(from, c.text);
        (c.attachments || []).forEach(function (a) { row.appendChild(attachmentNode(a)); });
        break;
      case "postback":
        row = bubble(from, c.text || c.payload);
        break;
      case "buttons":
        row = bubble(from, c.text);
        var add = choices(row, "pb-buttons");
        buttonsInto(row.lastChild, c.buttons, add);
        break;
      case "quick_replies":
        row = bubble(from, c.text);
        var reply = choices(row, "pb-quick-replies");
        (c.replies || []).forEach(function (r) { reply(r.title, r.payload); });
        break;
      case "list_picker":
        row = bubble(from, c.title);
        var item = choices(row, "pb-list");
        (c.items || []).forEach(function (i) {
          item(i.title, i.payload, function (button) {
            var img = safeUrl(i.image_url, true);
            if (img) { var pic = el("img", "pb-thumb"); pic.src = img; pic.alt = ""; button.prepend(pic); }
            if (i.subtitle) button.appendChild(el("span", "pb-subtitle", i.subtitle));
          });
        });
        break;
      case "carousel":
        row = bubble(from, null);
        var track = el("div", "pb-carousel");
        row.appendChild(track);
        (c.cards || []).forEach(function (card) {
          var box = el("div", "pb-card");
          var img = safeUrl(card.image_url, true);
          if (img) { var pic = el("img", "pb-card-image"); pic.src = img; pic.alt = ""; box.appendChild(pic); }
          box.appendChild(el("strong", "pb-card-title", card.title));
          if (card.subtitle) box.appendChild(el("span", "pb-subtitle", card.subtitle));
          var pick = choices(box, "pb-buttons");
          buttonsInto(box.lastChild, card.buttons, pick);
          track.appendChild(box);
        });
        break;
      case "time_picker":
        row = bubble(from, c.title);
        var slot = choices(row, "pb-slots");
        (c.slots || []).forEach(function (s) {
          var when = new Date(s.start);
          var label = isNaN(when) ? s.start : when.toLocaleString([], {
            weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"
          });
          if (s.duration_minutes) label += " (" + s.duration_minutes + " min)";
          slot(label, s.payload || s.start);
        });
        break;
      case "rich_link":
        row = bubble(from, null);
        var href = safeUrl(c.url, false);
        var card = el(href ? "a" : "div", "pb-rich-link");
        if (href) { card.href = href; card.target = "_blank"; card.rel = "noopener noreferrer"; }
        var preview = safeUrl(c.image_url, true);
        if (preview) { var pv = el("img", "pb-card-image"); pv.src = preview; pv.alt = ""; card.appendChild(pv); }
        card.appendChild(el("strong", "pb-card-title", c.title));
        if (c.description) card.appendChild(el("span", "pb-subtitle", c.description));
        row.appendChild(card);
        break;
      case "end_session":
        row = el("div", "pb-note", word("ended"));
        break;
      default:
        row = bubble(from, c.text || c.title || null);
    }
    if (entry.client_id) row.setAttribute("data-client-id", entry.client_id);
    if (entry.id) row.setAttribute("data-message-id", entry.id);
    if (entry.sender && from === "agent") row.setAttribute("title", entry.sender);
    log.appendChild(row);
    scrollDown();
    return row;
  }

  function markSent(clientId, how, why) {
    var row = log.querySelector('[data-client-id="' + CSS.escape(clientId) + '"]');
    if (!row) return;
    row.classList.remove("pb-sending");
    if (how === "failed") {
      row.classList.add("pb-failed");
      row.appendChild(el("div", "pb-error", why || word("not_sent")));
    }
  }

  // ---- the conversation ----------------------------------------------------

  // Sends a customer's message: shown at once (when `echo`), kept until
  // Patchbay says it is stored.
  function post(content, echo) {
    var item = { client_id: newId("m-"), content: content };
    var limit = (state.session && state.session.max_message_bytes) || 0;
    // Room for the frame around the content; a larger frame would close the socket.
    if (limit && JSON.stringify(item).length + 256 > limit) {
      var row = render(item, "me");
      row.classList.add("pb-failed");
      row.appendChild(el("div", "pb-error", word("too_large")));
      return;
    }
    if (echo) {
      state.transcript.push({ from: "me", entry: item });
      render(item, "me").classList.add("pb-sending");
      state.pending.push(item);
      save();
    }
    transmit(item);
  }

  function transmit(item) {
    if (connected && ws) {
      ws.send(JSON.stringify({ type: "send", client_id: item.client_id, content: item.content }));
    }
  }

  function settle(clientId) {
    state.pending = state.pending.filter(function (p) { return p.client_id !== clientId; });
    save();
  }

  function received(seq, message) {
    if (seq <= state.after) return; // already shown
    state.after = seq;
    var content = message.content || {};
    if (content.type === "typing") {
      save();
      typing.hidden = !content.active;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () { typing.hidden = true; }, 10000);
      return;
    }
    typing.hidden = true;
    state.transcript.push({ from: "agent", entry: message });
    save();
    render(message, "agent");
    if (message.id && connected) {
      ws.send(JSON.stringify({
        type: "send",
        client_id: "r-" + message.id,
        content: { type: "receipt", message_id: message.id, status: "Read" }
      }));
    }
  }

  function handle(frame) {
    switch (frame.type) {
      case "ready":
        connected = true;
        backoff = 500;
        setStatus("");
        state.pending.forEach(transmit);
        // Past half its life the token is renewed: reconnecting does it.
        clearTimeout(renewTimer);
        var s = state.session;
        var wait = s ? Math.max(60000, (s.expires_at - Date.now()) / 2 + 1000) : 60000;
        renewTimer = setTimeout(function () { if (ws) ws.close(); }, Math.min(wait, 2147483000));
        break;
      case "message":
        received(frame.seq, frame.message || {});
        break;
      case "ack":
        settle(frame.client_id);
        markSent(frame.client_id, "sent");
        break;
      case "rejected":
        settle(frame.client_id);
        markSent(frame.client_id, "failed", frame.error);
        break;
      case "retry":
        clearTimeout(retryTimer);
        retryTimer = setTimeout(function () { state.pending.forEach(transmit); }, 2000);
        break;
      case "expired":
        // Kept, not dropped: a site's sign-in may name the same customer.
        if (state.session) state.session.expires_at = 0;
        save();
        if (ws) ws.close();
        break;
    }
  }

  function session() {
    var s = state.session;
    var body = {};
    if (siteJwt) body = { site_jwt: siteJwt };
    else if (s && s.expires_at - Date.now() > 3600 * 1000 &&
             s.expires_at - Date.now() > (s.expires_at - s.issued_at) / 2) {
      return Promise.resolve(s);
    } else if (s && s.expires_at > Date.now()) body = { token: s.token };
    return fetch(prefix + "/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (response.status === 401 && body.token) {
        state.session.expires_at = 0;
        return session();
      }
      if (!response.ok) throw new Error("session refused: " + response.status);
      return response.json();
    }).then(function (issued) {
      if (!issued.token) return issued;
      var previous = state.session && state.session.customer && state.session.customer.id;
      if (previous !== issued.customer.id) {
        // Another customer (a new visitor, or the site signed someone else in).
        state.after = 0;
        state.pending = [];
        state.transcript = [];
        log.textContent = "";
      }
      state.session = {
        token: issued.token,
        customer: issued.customer,
        expires_at: issued.expires_at,
        issued_at: Date.now(),
        title: issued.title,
        texts: issued.texts || {},
        max_message_bytes: issued.max_message_bytes
      };
      save();
      return state.session;
    });
  }

  function connect() {
    clearTimeout(reconnectTimer);
    session().then(function (s) {
      title.textContent = s.title || word("launcher");
      launcher.textContent = word("launcher");
      input.placeholder = word("placeholder");
      send.textContent = word("send");
      typing.textContent = word("typing");
      var url = prefix.replace(/^http/, "ws") + "/socket";
      ws = new WebSocket(url);
      ws.onopen = function () {
        ws.send(JSON.stringify({ type: "hello", token: s.token, after: state.after }));
      };
      ws.onmessage = function (event) {
        var frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        handle(frame);
      };
      ws.onclose = function () {
        connected = false;
        ws = null;
        setStatus(word("reconnecting"));
        scheduleReconnect();
      };
    }).catch(function () {
      setStatus(word("unreachable"));
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }

  function start() {
    document.body.appendChild(root);
    state.transcript.forEach(function (t) {
      var row = render(t.entry, t.from);
      var waiting = state.pending.some(function (p) { return p.client_id === t.entry.client_id; });
      if (waiting) row.classList.add("pb-sending");
    });
    open(script.getAttribute("data-open") === "true" || options.open === true);
    connect();
  }

  // For tests and embedding pages: the socket, to drop it on purpose.
  window.PatchbayWebchat = Object.assign(options, {
    drop: function () { if (ws) ws.close(); },
    show: function () { open(true); }
  });

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
