// report.html's table: rows from the JSON block, sorted and filtered here. Every text goes in
// with textContent (never innerHTML), so a completion holding markup shows as text.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("rows-data").textContent);
  const table = document.getElementById("table");
  if (!table) return;
  const pairs = data.kind === "pairs";
  const prompts = new Map(Object.entries(data.prompts || {})); // a Map: an id like "constructor" is no key
  const hasText = prompts.size > 0 || data.rows.some((r) => "text" in r || "chosen" in r);
  const STEP = 250; // rows put in the table at a time: laying out 2,000 rows of text takes seconds
  const models = pairs ? [] : data.models || []; // a combined folder: one score column per model
  const agreement = pairs && data.rows.some((r) => "agreement" in r); // pairs built from a combined folder
  const canDisagree = models.length > 0 || agreement;
  const state = { q: "", status: "", sort: pairs ? "margin-desc" : "score-desc", group: !pairs, longer: false,
                  disagree: false, limit: STEP };

  const known = (x) => x !== null && x !== undefined;
  const ratio = (r) => (known(r.chars_chosen) && known(r.chars_rejected) && r.chars_rejected > 0
    ? r.chars_chosen / r.chars_rejected : null);
  const keys = pairs
    ? { margin: (r) => r.margin, ratio: ratio, agreement: (r) => r.agreement, row: (r) => r.row }
    : { score: (r) => r.score, chars: (r) => r.chars, rank: (r) => r.rank, row: (r) => r.row };
  models.forEach((_, i) => { keys["m" + i] = (r) => r.model_scores[i]; });
  const sorts = pairs
    ? [["margin-desc", "margin, largest first"], ["margin-asc", "margin, smallest first"],
       ["ratio-desc", "length ratio, largest first"], ["ratio-asc", "length ratio, smallest first"],
       ["row-asc", "file order"]].concat(agreement
      ? [["agreement-asc", "agreement, lowest first"], ["agreement-desc", "agreement, highest first"]] : [])
    : [["score-desc", "score, highest first"], ["score-asc", "score, lowest first"],
       ["chars-desc", "length, longest first"], ["chars-asc", "length, shortest first"],
       ["rank-asc", "rank within prompt, best first"], ["rank-desc", "rank within prompt, worst first"],
       ["row-asc", "file order"]].concat(models.flatMap((name, i) =>
         [["m" + i + "-desc", name + ", highest first"], ["m" + i + "-asc", name + ", lowest first"]]));

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined) return "n/a";
    return Math.abs(x) < 1e9 ? Number(x).toFixed(digits === undefined ? 3 : digits) : Number(x).toPrecision(4);
  }
  function numCell(tr, value, digits, name) {
    const td = el("td", fmt(value, digits), "num");
    if (value !== null && value !== undefined) td.dataset.value = String(value);
    if (name) td.dataset.col = name;
    tr.appendChild(td);
  }
  function textCell(tr, text, name) {
    if (!hasText) return; // --no-text: no text columns at all
    const td = el("td", null, "text");
    td.dataset.col = name;
    td.appendChild(el("div", text, "body"));
    tr.appendChild(td);
  }
  function promptBox(id, note) {
    const box = el("div", null, "prompt");
    box.appendChild(el("span", id, "pid"));
    if (note) box.appendChild(el("span", note, "of"));
    const text = prompts.get(id);
    if (text) {
      const details = el("details");
      details.appendChild(el("summary", "prompt"));
      details.appendChild(el("div", text, "body"));
      box.appendChild(details);
    }
    return box;
  }

  function controls() {
    const box = document.getElementById("controls");
    const search = el("input");
    search.type = "search";
    search.id = "filter";
    search.placeholder = "filter: " + (hasText ? "text, " : "") + "prompt id" + (pairs ? "" : " or reason");
    search.addEventListener("input", () => { state.q = search.value.toLowerCase(); update(); });
    box.appendChild(search);
    box.appendChild(select("sort", sorts, state.sort, (v) => { state.sort = v; }));
    if (pairs) {
      const button = el("button", "chosen is only longer");
      button.id = "only-longer";
      button.type = "button";
      button.title = "chosen answer longer than the rejected one, and margin at most " + fmt(data.small_margin) +
        " (the 25th percentile of every pair's margin)";
      button.addEventListener("click", () => {
        state.longer = !state.longer;
        button.classList.toggle("on", state.longer);
        if (state.longer) { state.sort = "margin-asc"; document.getElementById("sort").value = state.sort; }
        update();
      });
      box.appendChild(button);
    } else {
      const statuses = [...new Set(data.rows.map((r) => r.status))].sort();
      const options = [["", "every status"], ["!ok", "not scored (failed)"]].concat(statuses.map((s) => [s, s]));
      box.appendChild(select("status", options, "", (v) => { state.status = v; }));
      const label = el("label", null, "check");
      const group = el("input");
      group.type = "checkbox";
      group.id = "group";
      group.checked = state.group;
      group.addEventListener("change", () => { state.group = group.checked; update(); });
      label.appendChild(group);
      label.appendChild(document.createTextNode(" group by prompt"));
      box.appendChild(label);
    }
    if (canDisagree) {
      const button = el("button", "models disagree");
      button.id = "disagree";
      button.type = "button";
      button.title = pairs ? "pairs whose agreement is under 1: not every model's own scores prefer the chosen answer"
        : "completions whose rank within their prompt is not the same for every model";
      button.addEventListener("click", () => {
        state.disagree = !state.disagree;
        button.classList.toggle("on", state.disagree);
        update();
      });
      box.appendChild(button);
    }
  }
  function select(id, options, value, set) {
    const node = el("select");
    node.id = id;
    for (const [v, label] of options) {
      const option = el("option", label);
      option.value = v;
      node.appendChild(option);
    }
    node.value = value;
    node.addEventListener("change", () => { set(node.value); update(); });
    return node;
  }

  function isLonger(r) {
    return known(r.chars_chosen) && known(r.chars_rejected) && r.chars_chosen > r.chars_rejected &&
      known(r.margin) && known(data.small_margin) && r.margin <= data.small_margin;
  }
  function disagrees(r) {
    return pairs ? known(r.agreement) && r.agreement < 1 : r.disagree === true;
  }
  function matches(r) {
    if (state.longer && !isLonger(r)) return false;
    if (state.disagree && !disagrees(r)) return false;
    if (state.status === "!ok" && r.score !== null) return false;
    if (state.status && state.status !== "!ok" && r.status !== state.status) return false;
    if (!state.q) return true;
    const hay = [r.prompt_id, r.reason, r.text, r.chosen, r.rejected, prompts.get(r.prompt_id)];
    return hay.some((h) => h && String(h).toLowerCase().includes(state.q));
  }
  function comparator() {
    const [name, dir] = state.sort.split("-");
    const key = keys[name];
    const sign = dir === "desc" ? -1 : 1;
    return (a, b) => {
      const x = key(a), y = key(b);
      if (x === null && y === null) return a.row - b.row;
      if (x === null) return 1; // rows without the value go last either way
      if (y === null) return -1;
      return sign * (x - y) || a.row - b.row;
    };
  }
  function ordered(rows) {
    const cmp = comparator();
    rows.sort(cmp);
    if (!state.group) return rows.map((r) => ({ row: r }));
    const groups = new Map(); // first appearance in sorted order = the group's best row: groups in that order
    for (const r of rows) {
      if (!groups.has(r.prompt_id)) groups.set(r.prompt_id, []);
      groups.get(r.prompt_id).push(r);
    }
    const out = [];
    for (const [id, members] of groups) {
      out.push({ head: id, members: members });
      for (const r of members) out.push({ row: r });
    }
    return out;
  }

  function head() {
    const texts = hasText ? (pairs ? ["chosen", "rejected"] : ["text"]) : [];
    const names = pairs
      ? ["prompt", "margin", "score chosen", "score rejected", "length ratio"]
          .concat(agreement ? ["agreement"] : [], texts)
      : ["prompt", "completion", "rank", data.score_column || "score"].concat(models, ["chars"])
          .concat(data.rows.some((r) => "tokens" in r) ? ["tokens"] : [])
          .concat(["status", "reason"], texts);
    const tr = el("tr");
    for (const n of names) tr.appendChild(el("th", n));
    table.tHead.replaceChildren(tr);
    return names.length;
  }
  function pairRow(r) {
    const tr = el("tr", null, "row");
    const td = el("td");
    td.appendChild(promptBox(r.prompt_id));
    tr.appendChild(td);
    numCell(tr, r.margin, 3, "margin");
    numCell(tr, r.score_chosen, 3, "score_chosen");
    numCell(tr, r.score_rejected, 3, "score_rejected");
    numCell(tr, ratio(r), 2, "ratio");
    if (agreement) numCell(tr, r.agreement, 2, "agreement");
    textCell(tr, r.chosen, "chosen");
    textCell(tr, r.rejected, "rejected");
    return tr;
  }
  function scoredRow(r) {
    const tr = el("tr", null, r.score === null ? "row failed" : "row");
    const td = el("td");
    if (state.group) td.appendChild(el("span", r.prompt_id, "pid"));
    else td.appendChild(promptBox(r.prompt_id));
    tr.appendChild(td);
    tr.appendChild(el("td", r.completion_index, "num"));
    tr.appendChild(el("td", r.rank === null ? "n/a" : r.rank + " of " + r.ranked, "num"));
    numCell(tr, r.score, 3, "score");
    models.forEach((name, i) => {
      numCell(tr, r.model_scores[i], 3, "model-" + i);
      const rank = r.model_ranks[i];
      tr.lastChild.title = name + (known(rank) ? ": rank " + rank + " within the prompt" : "");
    });
    if (r.disagree) tr.classList.add("disagree");
    numCell(tr, r.chars, 0, "chars");
    if (data.rows.some((x) => "tokens" in x)) numCell(tr, r.tokens, 0, "tokens");
    for (const name of ["status", "reason"]) {
      const td = el("td", r[name] || "", name);
      td.dataset.col = name;
      tr.appendChild(td);
    }
    textCell(tr, r.text, "text");
    return tr;
  }
  function groupRow(item, width) {
    const tr = el("tr", null, "group");
    const td = el("td");
    td.colSpan = width;
    const of = item.members[0].of;
    td.appendChild(promptBox(item.head, item.members.length + " of " + of + " completions of this prompt shown"));
    tr.appendChild(td);
    return tr;
  }

  function update() {
    state.limit = STEP;
    render();
  }
  function render() {
    const width = head();
    const rows = data.rows.filter(matches);
    const body = document.createDocumentFragment();
    let put = 0;
    for (const item of ordered(rows)) {
      if (item.head !== undefined) {
        if (put < state.limit) body.appendChild(groupRow(item, width));
      } else if (put++ < state.limit) {
        body.appendChild((pairs ? pairRow : scoredRow)(item.row));
      }
    }
    table.tBodies[0].replaceChildren(body);
    const shown = Math.min(rows.length, state.limit);
    const count = document.getElementById("count");
    count.dataset.rows = String(rows.length);
    count.textContent = (hasText ? "" : "Texts left out (--no-text). ") + n(rows.length) + " of the " +
      n(data.rows.length) + " rows on this page match" +
      (state.longer ? " (chosen is only longer: " + n(data.only_longer_shown) + " of the " + n(data.only_longer) +
        " such pairs in the file are on this page)" : "") +
      (state.disagree ? " (models disagree: the folder holds " + n(data.disagree) + " such " +
        (pairs ? "pairs" : "rows") + ")" : "") +
      (shown < rows.length ? "; the table shows the first " + n(shown) + " (more below)" : "");
    more(rows.length - shown);
  }
  function more(left) {
    const box = document.getElementById("more");
    box.replaceChildren();
    if (left <= 0) return;
    const next = el("button", "show " + n(Math.min(STEP, left)) + " more");
    next.id = "show-more";
    next.type = "button";
    next.addEventListener("click", () => { state.limit += STEP; render(); });
    const all = el("button", "show all " + n(left + state.limit));
    all.id = "show-all";
    all.type = "button";
    all.addEventListener("click", () => { state.limit = Infinity; render(); });
    box.append(next, " ", all);
  }
  function n(x) {
    return Number(x).toLocaleString("en-US");
  }

  table.classList.toggle("no-text", !hasText);
  controls();
  render();
})();
