"""How the handbook looks: its stylesheet (inlined into every page, so the site works offline)
and the HTML of the index and policy pages, rendered from `engine.handbook`'s documents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.handbook import LastRun, PolicyDoc, ScenarioDoc, StepResult
    from engine.policy import Rule

CSS = """
:root { --ink: #1d2430; --muted: #5b6473; --line: #d9dee6; --bg: #fbfcfd;
  --pass: #1f7a3a; --pass-bg: #e5f4ea; --fail: #b3261e; --fail-bg: #fbe7e5;
  --none: #6a5a00; --none-bg: #fbf3cf; --grey: #555e6b; --grey-bg: #eceff3; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: var(--bg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
header, main, nav { max-width: 72rem; margin: 0 auto; padding: 0 1.5rem; }
header { padding-top: 1.5rem; }
h1 { font-size: 1.8rem; margin: 0.2rem 0 0.4rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 0.6rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.1rem; margin: 0 0 0.4rem; }
h4 { font-size: 1rem; margin: 0.8rem 0 0.3rem; }
code, pre, .hash { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.9em; }
ul.does { margin: 0; padding-left: 1.1rem; }
pre { background: #f2f4f7; border: 1px solid var(--line); border-radius: 6px;
  padding: 0.8rem 1rem; overflow-x: auto; white-space: pre-wrap; }
a { color: #1d4ed8; }
.muted, .stamp { color: var(--muted); }
.summary { font-size: 1.1rem; max-width: 50rem; }
.banner { border-radius: 6px; padding: 0.6rem 1rem; margin: 0.8rem 0; }
.banner.ok { background: var(--pass-bg); border: 1px solid #b7dfc3; }
.banner.warn { background: var(--none-bg); border: 1px solid #e6d27a; font-weight: 600; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; vertical-align: top; padding: 0.45rem 0.6rem;
  border-bottom: 1px solid var(--line); }
th { font-size: 0.85rem; text-transform: uppercase; letter-spacing: 0.03em;
  color: var(--muted); }
.badge { display: inline-block; border-radius: 999px; padding: 0.05rem 0.6rem;
  font-size: 0.85rem; font-weight: 600; white-space: nowrap; }
.badge.passed, .state.passed { color: var(--pass); background: var(--pass-bg); }
.badge.failed, .badge.incomplete, .state.failed { color: var(--fail); background: var(--fail-bg); }
.badge.not-run, .badge.skipped, .state.not-run, .state.skipped, .state.no-result,
.state.not-reached { color: var(--none); background: var(--none-bg); }
.badge.no-spec { color: var(--grey); background: var(--grey-bg); }
#policies td:first-child { white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.3rem 1.2rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.scenario { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 0.9rem 1.1rem; margin: 0.9rem 0; }
.scenario.failed, .scenario.incomplete { border-left: 5px solid var(--fail); }
.scenario.passed { border-left: 5px solid var(--pass); }
.example { border-top: 1px dashed var(--line); margin-top: 0.6rem; }
ol.steps { list-style: none; padding: 0; margin: 0.3rem 0; }
ol.steps li { padding: 0.15rem 0.4rem; border-radius: 4px; }
ol.steps li .state { float: right; font-size: 0.8rem; padding: 0 0.5rem; border-radius: 999px; }
ol.steps li.failed { background: var(--fail-bg); }
ol.steps li.not-reached, ol.steps li.no-result { background: #fdf9e6; }
.kw { font-weight: 700; color: #6b21a8; }
.bg { color: var(--muted); }
.tag { color: var(--muted); font-size: 0.85rem; margin-right: 0.5rem; }
table.data { width: auto; margin: 0.2rem 0 0.4rem 2rem; font-size: 0.9rem; }
table.data td, table.data th { border: 1px solid var(--line); padding: 0.15rem 0.5rem; }
details.error summary { cursor: pointer; color: var(--fail); }
.uncovered { color: var(--fail); font-weight: 600; }
"""


# --- HTML: `_h` escapes attribute values, `_t` escapes text; nothing else goes in raw ---------


_ORDER = ("passed", "failed", "incomplete", "skipped", "not run", "no spec")


def tally_statuses(statuses: Iterable[str]) -> str:
    """ "2 passed, 1 failed": in a fixed order, so pages and runs compare at a glance."""
    found = list(statuses)
    return ", ".join(f"{found.count(s)} {s}" for s in _ORDER if s in found)


def _h(tag: str, *children: str, **attrs: str | None) -> str:
    attr = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"' for k, v in attrs.items() if v
    )
    return f"<{tag}{attr}>{''.join(children)}</{tag}>"


def _t(text: object) -> str:
    return escape(str(text))


def _cls(status: str) -> str:
    return status.replace(" ", "-")


def _badge(status: str) -> str:
    return _h("span", _t(status), class_=f"badge {_cls(status)}")


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], **attrs: str | None) -> str:
    thead = _h("thead", _h("tr", *(_h("th", _t(c)) for c in head)))
    tbody = _h("tbody", *(_h("tr", *(_h("td", c) for c in row)) for row in rows))
    return _h("table", thead, tbody, **attrs)


def _page(title: str, body: str) -> str:
    # the CSP forbids every fetch: the pages stay offline whatever a policy's text says
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>{_t(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _run_banner(current: str, last: LastRun) -> str:
    where = _h("code", _t(last.path))
    when = f" (finished {_t(last.finished_at)})" if last.finished_at else ""
    now = _h("code", _t(current))
    if not last.found:
        text = f"No test results at {where}: every spec shows as not run. Run the tests."
    elif last.policy_set is None:
        text = f"Results in {where}{when} do not name the policy set they verified; current is "
        text += f"{now} &mdash; re-run the tests."
    elif last.policy_set != current:
        text = f"Results are from policy set {_h('code', _t(last.policy_set))}, current is {now}"
        text += f" &mdash; re-run the tests. ({where}{when})"
    else:
        return _h(
            "p",
            f"Spec status from the run{when} that verified {now} ({where}).",
            id="run",
            class_="banner ok",
        )
    return _h("p", text, id="run", class_="banner warn")


def index_html(current: str, last: LastRun, docs: tuple[PolicyDoc, ...]) -> str:
    totals = f" &middot; {_t(tally_statuses(d.status for d in docs))}" if docs else ""
    rows = []
    for d in docs:
        p = d.policy
        cells = [
            _h("td", _h("a", _t(p.id), href=f"policy-{p.id}.html")),
            *(_h("td", _t(v)) for v in (p.owner, p.principle, p.version)),
            _h("td", _t(p.hash), class_="hash"),
            _h("td", _badge(d.status), "<br>", _h("span", _t(d.counts), class_="muted")),
            _h("td", _t(d.coverage), class_="coverage"),
        ]
        rows.append(_h("tr", *cells, id=f"policy-{p.id}", data_policy=p.id, data_status=d.status))
    head = ("Policy", "Owner", "Principle", "Version", "Content hash", "Spec", "Coverage")
    thead = _h("thead", _h("tr", *(_h("th", _t(c)) for c in head)))
    stamp = f"Policy set {_h('code', _t(current), id='policy-set')} &middot; {len(docs)} policies"
    body = _h(
        "header",
        _h("h1", "Goodwill policy handbook"),
        _h("p", stamp + totals, class_="stamp"),
        _run_banner(current, last),
    )
    body += _h("main", _h("table", thead, _h("tbody", *rows), id="policies"))
    return _page("Goodwill policy handbook", body)


def _steps_html(steps: tuple[StepResult, ...]) -> str:
    items = []
    for s in steps:
        extra = ""
        if s.table:
            extra = _table(s.table[0], [[_t(c) for c in r] for r in s.table[1:]], class_="data")
        if s.docstring is not None:
            extra += _h("pre", _t(s.docstring))
        if s.error:
            summary = _h("summary", "error")
            extra += _h("details", summary, _h("pre", _t(s.error)), class_="error")
        bg = _h("span", " (background)", class_="bg") if s.background else ""
        state = _h("span", _t(s.status), class_=f"state {_cls(s.status)}") + " "
        kw = _h("span", _t(s.keyword), class_="kw") + " "
        cls = f"step {_cls(s.status)}"
        items.append(_h("li", state, kw, _t(s.text), bg, extra, class_=cls, data_status=s.status))
    return _h("ol", *items, class_="steps")


def _scenario_html(s: ScenarioDoc) -> str:
    title = _h(
        "h3", _h("span", _t(s.keyword + ":"), class_="kw"), " ", _t(s.name), " ", _badge(s.status)
    )
    notes = [_h("span", _t(n), class_="tag") for n in (f"@{t}" for t in s.tags)]
    if s.rule:
        notes.append(_h("span", _t(f"Rule: {s.rule}"), class_="tag"))
    if s.matched is not None:
        matched = ", ".join(s.matched) or "none"
        notes.append(_h("span", _t(f"matches policy rules: {matched}"), class_="tag"))
    parts = [title, _h("p", *notes) if notes else ""]
    if not s.examples:
        parts.extend(_steps_html(r.steps) for r in s.runs)
    else:
        written = (_h("li", _h("span", _t(k), class_="kw"), " ", _t(t)) for k, t in s.written)
        parts.append(_h("ol", *written, class_="steps written"))
    runs = iter(s.runs)
    for ex in s.examples:
        rows, expanded = [], []
        for row in ex.rows:
            run = next(runs)
            rows.append([*(_t(c) for c in row), _badge(run.status)])
            label = _t("Example: " + ", ".join(f"{k} = {v}" for k, v in run.example))
            expanded.append(
                _h(
                    "div",
                    _h("h4", label, " ", _badge(run.status)),
                    _steps_html(run.steps),
                    class_="example",
                    data_status=run.status,
                )
            )
        parts.append(_h("h4", _t(f"Examples: {ex.name}" if ex.name else "Examples")))
        parts.append(_table([*ex.header, "result"], rows, class_="data"))
        parts.extend(expanded)
    cls = f"scenario {_cls(s.status)}"
    return _h("section", *parts, class_=cls, data_scenario=s.name, data_status=s.status)


def _does(r: Rule) -> list[str]:
    """What a rule does, one line each, as its file says it: an auditor reads the then
    beside the when."""
    lines = [f"may give {g.remedy} up to {g.text}" for g in r.grants]
    lines += [f"charges {c.text} to the {c.budget} budget" for c in r.charges]
    lines += [f"follow-up due within {_duration(t)}" for t in r.follow_ups]
    for kind, spec in (("routes to", r.route), ("alerts", r.alert)):
        if spec is not None:
            shown = f" (shows {', '.join(spec.context)})" if spec.context else ""
            lines.append(f"{kind} {spec.to_path or spec.to}: {spec.reason}{shown}")
    if r.say:
        lines.append(f"says: “{r.say}”")
    return lines


def _duration(t: timedelta) -> str:
    minutes = int(t.total_seconds()) // 60
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def policy_html(d: PolicyDoc, current: str, last: LastRun) -> str:
    p = d.policy
    spec = f"{_badge(d.status)} {_t(d.counts)} &middot; {_h('code', _t(d.feature))}"
    facts = [
        ("Principle", _t(p.principle)),
        ("Owner", _t(p.owner)),
        ("Version", _t(p.version)),
        ("Listens to", _h("code", _t(p.on))),
        *([("Budget", _h("code", _t(p.budget)))] if p.budget else []),
        ("Content hash", _h("span", _t(p.hash), class_="hash")),
        ("Policy file", _h("code", _t(p.path))),
        ("Spec", spec),
        ("Coverage", _t(d.coverage)),
    ]
    rules = []
    for r in p.rules:
        by = "n/a" if d.covered is None else _t(", ".join(d.covered.get(r.name, ())))
        by = by or _h("span", "no scenario", class_="uncovered")
        does = _h("ul", *(_h("li", _t(line)) for line in _does(r)), class_="does")
        rules.append([_t(r.index + 1), _t(r.name), _h("code", _t(r.when_text)), does, by])
    scenarios = "".join(_scenario_html(s) for s in d.scenarios)
    if d.problem:
        scenarios = _h("p", _t(d.problem), class_="banner warn")
    elif d.unmatched:
        stale = f"{d.unmatched} result(s) of the last run match no scenario of {d.feature}: "
        text = _t(stale + "it changed since the run — re-run the tests.")
        scenarios = _h("p", text, id="unmatched", class_="banner warn") + scenarios
    nav = _h("nav", _h("p", _h("a", "&larr; All policies", href="index.html")))
    header = _h(
        "header",
        _h("h1", _t(p.id), " ", _badge(d.status)),
        _h("p", _t(p.summary), class_="summary"),
        _run_banner(current, last),
    )
    main = _h(
        "main",
        _h("dl", *(_h("dt", k) + _h("dd", v) for k, v in facts), class_="facts"),
        _h("h2", "Rules"),
        _table(("#", "rule", "when", "then", "matched by"), rules, class_="rules"),
        _h("h2", "Scenarios"),
        _h("div", scenarios, id="scenarios"),
        _h("h2", "Policy file"),
        _h("pre", _t(d.source), id="source"),
    )
    return _page(f"{p.id} — Goodwill policy handbook", nav + header + main)
