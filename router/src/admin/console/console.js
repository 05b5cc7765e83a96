// The admin console: a small single-page app over the admin API (served by the router at
// /console, see router/src/admin/console.rs). Plain JavaScript, no build step, no framework.
//
// Rules kept here:
// - The admin token is typed once, kept in this tab's sessionStorage and sent as an
//   Authorization header; never a cookie, never in a URL.
// - Nothing from an event or the API is interpreted as HTML: every text goes in through
//   textContent (the el() helper below); no HTML is ever parsed from a string.
// - Overview and Destinations poll the API every REFRESH_MS.
"use strict";

(function () {
  /** How often Overview and Destinations refresh, in ms. */
  const REFRESH_MS = 2000;
  /** Events on one page of the Events view. */
  const EVENTS_PAGE = 25;
  /** Dead letters on one page of the Dead letters view. */
  const LETTERS_PAGE = 25;
  /** The sessionStorage key of the token. */
  const TOKEN_KEY = "webhook-router-admin-token";

  const view = document.getElementById("view");
  let timer = null;
  let generation = 0;

  // ---- helpers ----------------------------------------------------------------------------

  /** An element with attributes and children (strings become text nodes, never HTML). */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  /** An API answer that was not a success. */
  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  /** Calls the admin API; resolves to {status, body, headers} for a 2xx, else throws ApiError. */
  async function api(method, path) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    let answer;
    try {
      answer = await fetch(path, { method, headers, credentials: "omit", cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "the router did not answer (" + error.message + ")", null);
    }
    let body = null;
    const type = answer.headers.get("content-type") || "";
    if (type.includes("json")) body = await answer.json();
    else body = await answer.text();
    if (!answer.ok) {
      const message = body && body.error ? body.error : String(body || answer.statusText);
      throw new ApiError(answer.status, message, body);
    }
    return { status: answer.status, body, headers: answer.headers };
  }

  /** Text for an API failure: a refusal says so and asks for the token. */
  function failure(error) {
    if (error.status === 401) {
      return "Refused (401): " + error.message + ". Enter the admin token above.";
    }
    return "Failed (" + error.status + "): " + error.message;
  }

  function time(ms) {
    return ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") : "never";
  }

  function age(ms) {
    if (!ms) return "none held";
    if (ms < 1000) return ms + " ms";
    if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
    return Math.round(ms / 60000) + " min";
  }

  function table(headings, rows, caption) {
    // Each cell names its column, for the narrow layout that shows rows as cards.
    for (const row of rows) {
      Array.from(row.children).forEach((cell, i) => {
        if (typeof headings[i] === "string") cell.dataset.label = headings[i];
      });
    }
    return el(
      "div",
      { class: "scroll" },
      el(
        "table",
        {},
        caption ? el("caption", { text: caption }) : null,
        el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows)
      )
    );
  }

  /** A form of labelled inputs; `fields` is [{name, label, type, options, value}]. */
  function filterForm(id, fields, values, onSubmit, submitText) {
    const form = el("form", { id, class: "filters" });
    for (const field of fields) {
      const inputId = id + "-" + field.name;
      let input;
      if (field.options) {
        input = el(
          "select",
          { id: inputId, name: field.name },
          field.options.map((option) =>
            el("option", { value: option, selected: values[field.name] === option }, option || "any")
          )
        );
      } else {
        input = el("input", {
          id: inputId,
          name: field.name,
          type: field.type || "text",
          value: values[field.name] || "",
          placeholder: field.placeholder || null,
        });
      }
      form.append(el("div", { class: "field" }, el("label", { for: inputId, text: field.label }), input));
    }
    form.append(el("button", { type: "submit", text: submitText || "Apply" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = {};
      for (const field of fields) {
        const value = form.elements[field.name].value.trim();
        if (value) data[field.name] = value;
      }
      onSubmit(data);
    });
    return form;
  }

  /** The query string of `values` (only those set). */
  function query(values) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(values)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, value);
    }
    const text = params.toString();
    return text ? "?" + text : "";
  }

  /** A datetime-local value (local time) as Unix ms, or the text as given. */
  function sinceMs(value) {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? value : String(ms);
  }

  /** Asks `question` in the confirmation dialog; resolves to whether it was confirmed. */
  function confirmDialog(question) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = question;
    return new Promise((resolve) => {
      const ok = document.getElementById("confirm-ok");
      const cancel = document.getElementById("confirm-cancel");
      const done = (answer) => {
        ok.removeEventListener("click", yes);
        cancel.removeEventListener("click", no);
        dialog.removeEventListener("cancel", no);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const yes = () => done(true);
      const no = () => done(false);
      ok.addEventListener("click", yes);
      cancel.addEventListener("click", no);
      dialog.addEventListener("cancel", no);
      dialog.showModal();
      cancel.focus();
    });
  }

  // ---- views ------------------------------------------------------------------------------

  /** Renders the view: `state` is ready, refused or failed; `children` replace its content. */
  function show(state, ...children) {
    view.dataset.state = state;
    view.replaceChildren(...children.flat());
  }

  function showFailure(title, error) {
    show(error.status === 401 ? "refused" : "failed", el("h2", { text: title }), el("p", { class: "error", role: "alert", text: failure(error) }));
  }

  /**
   * GETs `path` for the view titled `title`: the answer, or null if the request failed (the
   * failure shown while the view is still current) or the view is no longer current.
   */
  async function load(current, title, path) {
    let answer;
    try {
      answer = await api("GET", path);
    } catch (error) {
      if (current()) showFailure(title, error);
      return null;
    }
    return current() ? answer : null;
  }

  let lastStats = null;

  async function overview(current) {
    let stats, destinations;
    try {
      [stats, destinations] = await Promise.all([api("GET", "/stats"), api("GET", "/destinations")]);
    } catch (error) {
      if (current()) showFailure("Overview", error);
      return;
    }
    if (!current()) return;
    stats = stats.body;
    const previous = lastStats;
    lastStats = stats;
    const perMinute = (key) => {
      const [from, fromMs] =
        previous && previous.at_ms < stats.at_ms ? [previous[key], previous.at_ms] : [0, stats.started_at_ms];
      const minutes = Math.max(stats.at_ms - fromMs, 1) / 60000;
      return ((stats[key] - from) / minutes).toFixed(1);
    };
    const card = (name, label, value, total) =>
      el("div", { class: "card", "data-stat": name }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value }), el("span", { class: "total", text: total }));
    show(
      "ready",
      el("h2", { text: "Overview" }),
      el(
        "div",
        { class: "cards" },
        card("requests", "Requests / min", perMinute("requests"), stats.requests + " since start"),
        card("delivered", "Deliveries / min", perMinute("delivered"), stats.delivered + " since start"),
        card("failed", "Failures / min", perMinute("failed"), stats.failed + " failed attempts since start"),
        card("dead-letters", "Dead letters held", String(stats.dead_letters_held), stats.dead_lettered + " dead-lettered since start")
      ),
      table(
        ["Destination", "Circuit", "Held", "Oldest event"],
        destinations.body.map((d) => {
          const backlog = stats.destinations.find((s) => s.name === d.name) || d;
          return el(
            "tr",
            { "data-destination": d.name },
            el("td", { text: d.name }),
            el("td", { class: "circuit " + d.circuit, text: d.circuit }),
            el("td", { text: backlog.held + " / " + d.max_held }),
            el("td", { class: "oldest", text: age(backlog.oldest_event_age_ms) })
          );
        }),
        "Oldest event held per destination"
      ),
      el("p", { class: "muted", text: "Rates between two polls; refreshed every " + REFRESH_MS / 1000 + " s." })
    );
  }

  async function routes(current) {
    const answer = await load(current, "Routes", "/routes");
    if (!answer) return;
    const deliveries = (route) =>
      Object.entries(route.counts.deliveries).map(([destination, outcomes]) =>
        el("div", {}, destination + ": " + Object.entries(outcomes).map(([o, n]) => o + " " + n).join(", "))
      );
    show(
      "ready",
      el("h2", { text: "Routes" }),
      table(
        ["Route", "Path", "Verify", "Plugins", "Destinations", "Accepted", "Answers", "Deliveries"],
        answer.body.map((route) =>
          el(
            "tr",
            { "data-route": route.id },
            el("td", { text: route.id }),
            el("td", {}, el("code", { text: route.path })),
            el("td", { text: route.verify ? route.verify.preset : "none" }),
            el("td", { text: route.plugins.map((p) => p.name).join(", ") || "none" }),
            el("td", { text: route.destinations.concat(route.fan_out.map((d) => d + " (fan-out)")).join(", ") }),
            el("td", { text: route.counts.accepted }),
            el("td", { text: Object.entries(route.counts.requests).map(([s, n]) => s + ": " + n).join(", ") }),
            el("td", {}, deliveries(route))
          )
        )
      )
    );
  }

  async function destinations(current) {
    const answer = await load(current, "Destinations", "/destinations");
    if (!answer) return;
    show(
      "ready",
      el("h2", { text: "Destinations" }),
      table(
        ["Destination", "Circuit", "Held / max_held", "In flight", "Oldest event", "Last error", "Last success"],
        answer.body.map((d) =>
          el(
            "tr",
            { "data-destination": d.name },
            el("td", { text: d.name }),
            el("td", { class: "circuit " + d.circuit, text: d.circuit }),
            el("td", { text: d.held + " / " + d.max_held }),
            el("td", { text: d.in_flight + " / " + d.max_in_flight }),
            el("td", { text: age(d.oldest_event_age_ms) }),
            el("td", { class: "last-error" }, d.last_error ? [el("div", { text: d.last_error }), el("div", { class: "muted", text: time(d.last_error_at_ms) })] : "none"),
            el("td", { text: time(d.last_success_at_ms) })
          )
        )
      ),
      el("p", { class: "muted", text: "Refreshed every " + REFRESH_MS / 1000 + " s." })
    );
  }

  // Events: the filters and the cursors of the pages before this one (for Previous).
  const events = { filters: {}, cursors: [], cursor: null };

  async function eventList(current) {
    const params = Object.assign({}, events.filters, { limit: EVENTS_PAGE, cursor: events.cursor });
    if (params.since) params.since = sinceMs(params.since);
    const answer = await load(current, "Events", "/events" + query(params));
    if (!answer) return;
    const page = answer.body;
    const form = filterForm(
      "event-filters",
      [
        { name: "route", label: "Route" },
        { name: "destination", label: "Destination" },
        { name: "outcome", label: "Outcome", options: ["", "pending", "delivered", "dead_lettered", "dropped", "rejected", "refused"] },
        { name: "since", label: "Since", type: "datetime-local" },
      ],
      events.filters,
      (values) => {
        events.filters = values;
        events.cursors = [];
        events.cursor = null;
        render();
      }
    );
    const rows = page.events.map((e) =>
      el(
        "tr",
        { "data-event": e.id, "data-outcome": e.outcome },
        el("td", { text: time(e.received_ms) }),
        el("td", {}, el("a", { href: "#event/" + encodeURIComponent(e.id), text: e.id })),
        el("td", { text: e.route }),
        el("td", { class: "delivery-id", text: e.delivery_id || "" }),
        el("td", { class: "outcome " + e.outcome, text: e.outcome }),
        el("td", { text: e.destinations.map((d) => d.name + ": " + d.outcome + " (" + d.attempts.length + ")").join(", ") })
      )
    );
    const previous = el("button", { type: "button", id: "events-previous", disabled: events.cursors.length === 0, text: "Previous page" });
    previous.addEventListener("click", () => {
      events.cursor = events.cursors.pop() || null;
      render();
    });
    const next = el("button", { type: "button", id: "events-next", disabled: !page.next_cursor, text: "Next page" });
    next.addEventListener("click", () => {
      events.cursors.push(events.cursor);
      events.cursor = page.next_cursor;
      render();
    });
    show(
      "ready",
      el("h2", { text: "Events" }),
      form,
      rows.length ? table(["Received", "Event", "Route", "Delivery id", "Outcome", "Destinations (attempts)"], rows) : el("p", { class: "muted", text: "No recorded event matches." }),
      el("div", { class: "pager" }, previous, el("span", { text: "Page " + (events.cursors.length + 1) }), next)
    );
  }

  async function eventPage(current, id) {
    const answer = await load(current, "Event " + id, "/events/" + encodeURIComponent(id));
    if (!answer) return;
    const e = answer.body;
    const facts = [
      ["Event", e.id],
      ["Route", e.route],
      ["Received", time(e.received_ms)],
      ["Delivery id", e.delivery_id || "none"],
      ["Decision", e.decision + (e.decision_detail !== null ? " (" + JSON.stringify(e.decision_detail) + ")" : "")],
      ["Outcome", e.outcome],
    ];
    const body = e.body
      ? e.body.text !== undefined
        ? el("pre", { id: "event-body", class: "body", text: e.body.text })
        : el("pre", { id: "event-body", class: "body", text: "(not UTF-8; base64) " + e.body.base64 })
      : el("p", { class: "muted", text: "The route does not keep bodies (inspect_bodies)." });
    show(
      "ready",
      el("p", {}, el("a", { href: "#events", text: "← Events" })),
      el("h2", { text: "Event " + e.id }),
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
      el("h3", { text: "Plugin verdicts" }),
      e.plugins.length
        ? table(["Plugin", "Verdict", "Detail"], e.plugins.map((p) => el("tr", { "data-plugin": p.plugin }, el("td", { text: p.plugin }), el("td", { text: p.verdict }), el("td", { text: p.detail === null || p.detail === undefined ? "" : typeof p.detail === "string" ? p.detail : JSON.stringify(p.detail) }))))
        : el("p", { class: "muted", text: "No plugin ran." }),
      el("h3", { text: "Attempts" }),
      e.destinations.length
        ? e.destinations.map((d) =>
            el(
              "section",
              { class: "timeline", "data-destination": d.name, "data-outcome": d.outcome },
              el("h4", {}, d.name + " — ", el("span", { class: "outcome " + d.outcome, text: d.outcome })),
              d.attempts.length
                ? el(
                    "ol",
                    {},
                    d.attempts.map((a) =>
                      el(
                        "li",
                        { class: "attempt", "data-status": a.status === null ? "none" : a.status },
                        el("span", { class: "when", text: time(a.at_ms) }),
                        " ",
                        el("span", { class: "status", text: a.status === null ? "no answer" : "HTTP " + a.status }),
                        " ",
                        el("span", { class: "muted", text: Number(a.duration_ms).toFixed(1) + " ms" }),
                        a.error ? el("div", { class: "error", text: a.error }) : null
                      )
                    )
                  )
                : el("p", { class: "muted", text: "No attempt yet." })
            )
          )
        : el("p", { class: "muted", text: "No destination." }),
      el("h3", { text: "Body" }),
      body
    );
  }

  // Dead letters: the filter, the page, and the selection (ids, or every letter matching).
  const letters = { filters: {}, cursors: [], cursor: null, selected: new Set(), allMatching: false };

  /** The filter as query keys, or all=true for none (the API needs one or the other). */
  function letterFilter() {
    const filter = Object.assign({}, letters.filters);
    for (const key of ["since", "until"]) if (filter[key]) filter[key] = sinceMs(filter[key]);
    return Object.keys(filter).length ? filter : { all: "true" };
  }

  /** How many letters the filter matches now, counted over every page. */
  async function countMatching() {
    let count = 0;
    let cursor = null;
    for (;;) {
      const filter = letterFilter();
      delete filter.all;
      const answer = await api("GET", "/dead-letters" + query(Object.assign(filter, { limit: 10000, cursor })));
      count += answer.body.length;
      cursor = answer.headers.get("x-next-cursor");
      if (!cursor) return count;
    }
  }

  function note(text, kind) {
    const box = document.getElementById("letters-answer");
    if (box) {
      box.textContent = text;
      box.className = kind || "";
    }
  }

  /** Replays (`replay`) or discards the selected letters, after a confirmation stating the count. */
  async function actOnLetters(replay) {
    const verb = replay ? "Replay" : "Discard";
    try {
      if (letters.allMatching) {
        const count = await countMatching();
        const filter = letterFilter();
        const described = filter.all ? "every dead letter" : Object.entries(letters.filters).map(([k, v]) => k + "=" + v).join(", ");
        if (!(await confirmDialog(verb + " " + count + " dead letters (all matching " + described + ")?"))) return;
        const answer = replay ? await api("POST", "/dead-letters/replay" + query(filter)) : await api("DELETE", "/dead-letters" + query(filter));
        const done = replay ? answer.body.queued : answer.body.discarded;
        const extra = replay ? " (matched " + answer.body.matched + ", not replayable " + answer.body.not_replayable + ", not queued " + answer.body.not_queued + ")" : "";
        note((replay ? "Replayed " : "Discarded ") + done + " dead letters" + extra + ".", "ok");
      } else {
        const ids = Array.from(letters.selected);
        if (!ids.length) {
          note("Select dead letters first.", "error");
          return;
        }
        if (!(await confirmDialog(verb + " " + ids.length + " selected dead letters?"))) return;
        let done = 0;
        const failures = [];
        for (const id of ids) {
          try {
            await api(replay ? "POST" : "DELETE", "/dead-letters/" + encodeURIComponent(id) + (replay ? "/replay" : ""));
            done += 1;
          } catch (error) {
            failures.push(id + ": " + failure(error));
          }
        }
        note((replay ? "Replayed " : "Discarded ") + done + " of " + ids.length + " dead letters." + (failures.length ? " " + failures.join("; ") : ""), failures.length ? "error" : "ok");
      }
    } catch (error) {
      note(failure(error), "error");
      return;
    }
    letters.selected.clear();
    letters.allMatching = false;
    letters.cursors = [];
    letters.cursor = null;
    const box = document.getElementById("letters-answer");
    const [text, kind] = [box.textContent, box.className];
    await deadLetters(() => view.dataset.view === "dead-letters");
    note(text, kind);
  }

  async function deadLetters(current) {
    const filter = letterFilter();
    delete filter.all;
    const answer = await load(current, "Dead letters", "/dead-letters" + query(Object.assign(filter, { limit: LETTERS_PAGE, cursor: letters.cursor })));
    if (!answer) return;
    const page = answer.body;
    const nextCursor = answer.headers.get("x-next-cursor");
    const form = filterForm(
      "letter-filters",
      [
        { name: "route", label: "Route" },
        { name: "destination", label: "Destination" },
        { name: "reason", label: "Reason", placeholder: "http_5xx, timeout…" },
        { name: "since", label: "Failed since", type: "datetime-local" },
        { name: "until", label: "Failed before", type: "datetime-local" },
      ],
      letters.filters,
      (values) => {
        letters.filters = values;
        letters.cursors = [];
        letters.cursor = null;
        letters.selected.clear();
        letters.allMatching = false;
        render();
      }
    );
    const selectPage = el("input", { type: "checkbox", id: "select-page", "aria-label": "Select every letter on this page" });
    selectPage.checked = page.length > 0 && page.every((l) => letters.selected.has(l.id));
    const rows = page.map((l) => {
      const box = el("input", { type: "checkbox", class: "select", "aria-label": "Select " + l.id });
      box.checked = letters.allMatching || letters.selected.has(l.id);
      box.disabled = letters.allMatching;
      box.addEventListener("change", () => {
        if (box.checked) letters.selected.add(l.id);
        else letters.selected.delete(l.id);
        selection.textContent = selectionText();
      });
      return el(
        "tr",
        { "data-letter": l.id, "data-destination": l.destination },
        el("td", {}, box),
        el("td", {}, el("a", { href: "#event/" + encodeURIComponent(l.event_id), text: l.event_id })),
        el("td", { text: l.route }),
        el("td", { text: l.destination }),
        el("td", { text: l.reason }),
        el("td", { text: l.attempts }),
        el("td", { text: l.last_error }),
        el("td", { text: time(l.failed_at_ms) })
      );
    });
    selectPage.addEventListener("change", () => {
      for (const l of page) {
        if (selectPage.checked) letters.selected.add(l.id);
        else letters.selected.delete(l.id);
      }
      for (const box of view.querySelectorAll("input.select")) box.checked = selectPage.checked;
      selection.textContent = selectionText();
    });
    const selectionText = () => (letters.allMatching ? "All letters matching the filter are selected (every page)." : letters.selected.size + " selected.");
    const selection = el("span", { id: "selection", text: selectionText() });
    const all = el("button", { type: "button", id: "select-all-matching", text: letters.allMatching ? "Clear selection" : "Select all matching" });
    all.addEventListener("click", () => {
      letters.allMatching = !letters.allMatching;
      letters.selected.clear();
      render();
    });
    const replay = el("button", { type: "button", id: "replay", text: "Replay…" });
    replay.addEventListener("click", () => actOnLetters(true));
    const discard = el("button", { type: "button", id: "discard", class: "danger", text: "Discard…" });
    discard.addEventListener("click", () => actOnLetters(false));
    const previous = el("button", { type: "button", id: "letters-previous", disabled: letters.cursors.length === 0, text: "Previous page" });
    previous.addEventListener("click", () => {
      letters.cursor = letters.cursors.pop() || null;
      render();
    });
    const next = el("button", { type: "button", id: "letters-next", disabled: !nextCursor, text: "Next page" });
    next.addEventListener("click", () => {
      letters.cursors.push(letters.cursor);
      letters.cursor = nextCursor;
      render();
    });
    show(
      "ready",
      el("h2", { text: "Dead letters" }),
      form,
      el("div", { class: "toolbar" }, all, selection, replay, discard),
      el("p", { id: "letters-answer", role: "status" }),
      page.length
        ? table([selectPage, "Event", "Route", "Destination", "Reason", "Attempts", "Last error", "Failed"], rows)
        : el("p", { class: "muted", text: "No dead letter matches." }),
      el("div", { class: "pager" }, previous, el("span", { text: "Page " + (letters.cursors.length + 1) }), next)
    );
  }

  // ---- reload -----------------------------------------------------------------------------

  async function reload() {
    const box = document.getElementById("reload-answer");
    box.hidden = false;
    box.className = "";
    box.replaceChildren(el("p", { text: "Reloading…" }));
    try {
      const answer = await api("POST", "/reload");
      const r = answer.body;
      const list = (label, items) => el("li", { text: label + ": " + (items && items.length ? items.join(", ") : "none") });
      box.className = "ok";
      box.replaceChildren(
        el("p", { text: "Reloaded: config " + r.hash + "." }),
        el("ul", {}, list("Routes added", r.routes_added), list("Routes removed", r.routes_removed), list("Routes changed", r.routes_changed), list("Destinations changed", r.destinations_changed), el("li", { text: "Modules compiled: " + r.modules_compiled }))
      );
    } catch (error) {
      box.className = "error";
      const errors = error.body && Array.isArray(error.body.errors) ? error.body.errors : [];
      box.replaceChildren(el("p", { role: "alert", text: failure(error) }), errors.length ? el("ul", { class: "errors" }, errors.map((e) => el("li", { text: e }))) : null);
    }
    box.append(el("button", { type: "button", class: "dismiss", text: "Dismiss", onclick: () => (box.hidden = true) }));
  }

  // ---- navigation -------------------------------------------------------------------------

  /** The view the location's hash names, and its argument. */
  function location() {
    const hash = decodeURIComponent(window.location.hash.replace(/^#/, ""));
    if (hash.startsWith("event/")) return ["event", hash.slice("event/".length)];
    const known = ["overview", "routes", "destinations", "events", "dead-letters"];
    return [known.includes(hash) ? hash : "overview", null];
  }

  const views = {
    overview: { draw: overview, poll: true },
    routes: { draw: routes, poll: false },
    destinations: { draw: destinations, poll: true },
    events: { draw: eventList, poll: false },
    event: { draw: eventPage, poll: false },
    "dead-letters": { draw: deadLetters, poll: false },
  };

  /** Draws the current view (and polls it, if it refreshes). */
  function render() {
    clearTimeout(timer);
    view.dataset.state = "loading";
    const mine = ++generation;
    const current = () => mine === generation;
    const [name, argument] = location();
    const chosen = views[name];
    view.dataset.view = name;
    for (const link of document.querySelectorAll("nav a")) {
      if (link.dataset.view === name || (name === "event" && link.dataset.view === "events")) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const tick = async () => {
      await chosen.draw(current, argument);
      if (chosen.poll && current()) timer = setTimeout(tick, REFRESH_MS);
    };
    tick();
  }

  function showLogin() {
    document.getElementById("login-state").textContent = token() ? "Token set for this tab." : "No token.";
  }

  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token");
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    input.value = "";
    showLogin();
    render();
  });
  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
    render();
  });
  document.getElementById("reload").addEventListener("click", reload);
  window.addEventListener("hashchange", () => {
    lastStats = null;
    render();
    view.focus();
  });
  showLogin();
  render();
})();
