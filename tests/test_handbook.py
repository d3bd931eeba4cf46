"""The handbook (`goodwill docs`): built from policies, features and a real pytest-bdd run.

The cucumber JSON is never written by hand here: a tiny feature set is run by pytest-bdd in a
subprocess, so a change in what pytest-bdd writes breaks these tests, not the handbook in use.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.handbook import (
    DEFAULT_RESULTS,
    HandbookError,
    build_handbook,
    load_last_run,
    meta_path,
    record_run_meta,
    summary_lines,
)
from engine.load import load_policy_set

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
STATUSES = {"passed", "failed", "not run", "no spec"}

POLICIES = {
    "mend-it": """\
        policy: mend-it
        version: 2
        owner: support-operations
        principle: Fix it to the benefit of the customer.
        summary: A broken part is <b>replaced</b> & "thanked" for.
        on: item.defect_reported
        rules:
          - name: trusted
            when: customer.remedies_90d < 3
            then:
              authorize: [{remedy: replacement, up_to: order.amount}]
              say: Sorry it broke & we'll replace it.
          - name: frequent
            when: customer.remedies_90d >= 3
            then:
              route: {to: team-lead, reason: several remedies}
              say: A colleague will call you today.
        """,
    "say-sorry": """\
        policy: say-sorry
        version: 1
        owner: cx-team
        principle: Under-promise and over-deliver.
        summary: Every new contact may get a small credit.
        on: contact.opened
        rules:
          - name: small-credit
            then:
              authorize: [{remedy: credit, up_to: 5}]
              say: "Sorry <script>alert('x')</script> for the trouble."
        """,
    "lost-parcel": """\
        policy: lost-parcel
        version: 1
        owner: logistics
        principle: Take responsibility.
        summary: A lost parcel is resent.
        on: shipment.lost
        rules:
          - name: resend
            then:
              authorize: [{remedy: replacement, up_to: order.amount}]
              say: We'll resend it today.
        """,
}

FEATURES = {
    "mend-it": """\
        Feature: Mend it
          Background:
            Given a customer

          Scenario: A trusted customer gets a replacement
            Given the customer had 1 remedies
            Then the outcome is authorized

          Scenario Outline: Remedies <count> decide the outcome
            Given the customer had <count> remedies
            Then the outcome is <outcome>
            And the rep has words to say

            Examples: usual
              | count | outcome    |
              | 1     | authorized |
              | 5     | authorized |

          Scenario: A step nobody defined
            Given the customer had 1 remedies
            Then the moon is <full> & bright
        """,
    "say-sorry": """\
        Feature: Say sorry
          Scenario: Credit on contact
            Given the customer had 0 remedies
            Then these remedies are offered:
              | remedy | up to |
              | credit | 5     |
            And the rep says:
              \"\"\"
              Sorry <script>alert('x')</script> for the trouble.
              \"\"\"
        """,
}

STEPS = """\
    from pytest_bdd import given, parsers, scenarios, then

    scenarios("features")

    @given("a customer")
    def customer():
        pass

    @given(parsers.parse("the customer had {n:d} remedies"), target_fixture="remedies")
    def remedies(n):
        return n

    @then(parsers.parse("the outcome is {outcome}"))
    def outcome(remedies, outcome):
        assert ("authorized" if remedies < 3 else "routed") == outcome

    @then("the rep has words to say")
    def words():
        pass

    @then("these remedies are offered:")
    def offered(datatable):
        assert datatable[1][0] == "credit"

    @then("the rep says:")
    def says(docstring):
        assert "Sorry" in docstring
    """


@dataclass(frozen=True)
class Synthetic:
    policies: Path
    features: Path
    results: Path
    run_output: str


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    """Three policies, two features, and pytest-bdd's own cucumber JSON of running them."""
    root = tmp_path_factory.mktemp("synthetic")
    (root / "policies").mkdir()
    (root / "features").mkdir()
    for pid, text in POLICIES.items():
        (root / "policies" / f"{pid}.yaml").write_text(textwrap.dedent(text))
    for pid, text in FEATURES.items():
        (root / "features" / f"{pid}.feature").write_text(textwrap.dedent(text))
    (root / "test_specs.py").write_text(textwrap.dedent(STEPS))
    (root / "pytest.ini").write_text("[pytest]\n")
    results = root / "run" / "last-run.cucumber.json"
    results.parent.mkdir()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "pytest.ini"]
    cmd += ["--rootdir", str(root), f"--cucumberjson={results}", "test_specs.py"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
    # the outline's second row and the undefined step fail by design; the rest pass
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 failed, 3 passed" in done.stdout, done.stdout
    return Synthetic(root / "policies", root / "features", results, done.stdout)


_BLOCKS = {"p", "div", "section", "li", "td", "th", "tr", "dt", "dd", "h1", "h2", "h3", "h4"}
_BLOCKS |= {"pre", "br", "summary", "details", "header", "main", "nav", "table", "ol"}


class _Dom(HTMLParser):
    """Every element's attributes (plus its tag) and the page's visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict[str, str]] = []
        self.chunks: list[str] = []
        self._skip = 0
        self.feed(html)
        self.text = re.sub(r"\s+", " ", "".join(self.chunks))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append({"tag": tag, **{k: v or "" for k, v in attrs}})
        self._skip += tag in ("style", "title")
        self.chunks.append(" " if tag in _BLOCKS else "")  # cells, items: separate words

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "title")
        self.chunks.append(" " if tag in _BLOCKS else "")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)

    def statuses(self, attr: str) -> dict[str, str]:
        return {e[attr]: e["data-status"] for e in self.elements if attr in e}

    def step_statuses(self) -> list[str]:
        return [e["data-status"] for e in self.elements if "step" in e.get("class", "").split()]


def _read(path: Path) -> _Dom:
    return _Dom(path.read_text(encoding="utf-8"))


def _build(tmp_path: Path, s: Synthetic, **kw: Any) -> Path:
    site = tmp_path / "site"
    build_handbook(site, s.policies, s.features, kw.pop("results", s.results), **kw)
    return site


def _current(s: Synthetic) -> str:
    return load_policy_set(s.policies).hash


@pytest.fixture
def results(tmp_path: Path, synthetic: Synthetic) -> Path:
    """This test's own copy of the run's results, free to be stamped."""
    copy = tmp_path / "run" / "last-run.cucumber.json"
    copy.parent.mkdir()
    copy.write_bytes(synthetic.results.read_bytes())
    return copy


def test_pytest_bdd_writes_the_cucumber_json_the_handbook_relies_on(synthetic: Synthetic) -> None:
    doc = json.loads(synthetic.results.read_text())
    by_file = {f["uri"].rsplit("/", 1)[-1]: f for f in doc}
    assert set(by_file) == {"mend-it.feature", "say-sorry.feature"}
    elements = by_file["mend-it.feature"]["elements"]
    # an outline row is one element per example, on the template's line, steps rendered
    rows = [e for e in elements if e["keyword"] == "Scenario Outline"]
    assert [e["name"] for e in rows] == [
        "Remedies 1 decide the outcome",
        "Remedies 5 decide the outcome",
    ]
    assert rows[0]["line"] == rows[1]["line"]
    failing = rows[1]["steps"]
    assert [s["name"] for s in failing] == [
        "a customer",
        "the customer had 5 remedies",
        "the outcome is authorized",
        "the rep has words to say",
    ]
    # the failing step carries the error; the steps after it are "failed" with no message
    assert [s["result"]["status"] for s in failing] == ["passed", "passed", "failed", "failed"]
    assert "AssertionError" in failing[2]["result"]["error_message"]
    assert failing[3]["result"]["error_message"] == ""
    # an undefined step is simply missing, and the steps before it read "passed"
    undefined = next(e for e in elements if e["name"] == "A step nobody defined")
    assert [s["result"]["status"] for s in undefined["steps"]] == ["passed", "passed"]


def test_index_lists_every_policy_with_status_coverage_and_stamp(
    tmp_path: Path, synthetic: Synthetic, results: Path
) -> None:
    record_run_meta(results, _current(synthetic))
    coverage = {"mend-it": {"A trusted customer gets a replacement": {"trusted"}}}
    index = _read(_build(tmp_path, synthetic, coverage=coverage, results=results) / "index.html")
    assert index.statuses("data-policy") == {
        "lost-parcel": "no spec",
        "mend-it": "failed",
        "say-sorry": "passed",
    }
    # status, then what the scenarios did, then rules covered (a policy not in the map: none)
    assert "failed 4 scenarios: 2 passed, 1 failed, 1 incomplete 1/2 rules" in index.text
    assert "passed 1 scenario: 1 passed 0/1 rules" in index.text
    assert "no spec no scenarios 0/1 rules" in index.text
    assert f"Policy set {_current(synthetic)}" in index.text
    assert "that verified" in index.text and "re-run the tests" not in index.text


def test_policy_page_says_what_each_rule_does_beside_its_when(
    tmp_path: Path, synthetic: Synthetic
) -> None:
    page = _read(_build(tmp_path, synthetic) / "policy-mend-it.html")
    assert (
        "1 trusted customer.remedies_90d < 3 may give replacement up to order.amount"
        " says: “Sorry it broke & we'll replace it.”" in page.text
    )
    assert "2 frequent customer.remedies_90d >= 3 routes to team-lead: several remedies" in (
        page.text
    )


def test_policy_page_shows_each_step_status_and_expands_outlines(
    tmp_path: Path, synthetic: Synthetic
) -> None:
    page = _read(_build(tmp_path, synthetic) / "policy-mend-it.html")
    assert page.statuses("data-scenario") == {
        "A trusted customer gets a replacement": "passed",
        "Remedies <count> decide the outcome": "failed",
        "A step nobody defined": "incomplete",
    }
    examples = [e["data-status"] for e in page.elements if e.get("class") == "example"]
    assert examples == ["passed", "failed"]
    assert "Example: count = 5, outcome = authorized failed" in page.text
    assert "Then the outcome is <outcome>" in page.text  # the template as written, too
    assert page.step_statuses() == [
        *["passed"] * 3,  # trusted customer (with the background step)
        *["passed"] * 4,  # row 1
        *["passed", "passed", "failed", "not reached"],  # row 2
        *["passed", "passed", "no result"],  # the undefined step
    ]
    assert "no result Then the moon is <full> & bright" in page.text
    assert "(background)" in page.text and "AssertionError" in page.text
    assert "Coverage n/a" in page.text and "Version 2" in page.text


def test_policy_text_and_specs_are_escaped_and_pages_stay_offline(
    tmp_path: Path, synthetic: Synthetic
) -> None:
    site = _build(tmp_path, synthetic)
    raw = (site / "policy-say-sorry.html").read_text()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in raw  # the YAML and docstring
    page = _read(site / "policy-say-sorry.html")
    assert "Sorry <script>alert('x')</script> for the trouble." in page.text
    assert "remedy up to credit 5" in page.text  # the step's data table
    for html in site.glob("*.html"):
        dom = _read(html)
        tags = {e["tag"] for e in dom.elements}
        assert not tags & {"script", "link", "img", "iframe", "object"}, html
        assert not re.search(r"https?://", html.read_text()), html
    index = _read(site / "index.html")
    assert "A broken part is" not in index.text  # summaries are on the policy pages
    mend = _read(site / "policy-mend-it.html")
    assert 'A broken part is <b>replaced</b> & "thanked" for.' in mend.text
    assert not any(e["tag"] == "b" for e in mend.elements)


def test_stale_or_unstamped_results_are_flagged(
    tmp_path: Path, synthetic: Synthetic, results: Path
) -> None:
    record_run_meta(results, "0123456789abcdef")
    text = _read(_build(tmp_path, synthetic, results=results) / "index.html").text
    assert (
        f"Results are from policy set 0123456789abcdef, current is {_current(synthetic)} — "
        "re-run the tests." in text
    )
    meta_path(results).unlink()
    text = _read(_build(tmp_path, synthetic, results=results) / "index.html").text
    assert "do not name the policy set they verified" in text


def test_without_results_every_spec_is_not_run(tmp_path: Path, synthetic: Synthetic) -> None:
    site = _build(tmp_path, synthetic, results=tmp_path / "missing.cucumber.json")
    index = _read(site / "index.html")
    assert set(index.statuses("data-policy").values()) == {"not run", "no spec"}
    assert index.statuses("data-policy")["mend-it"] == "not run"
    assert "No test results at" in index.text
    assert index.text.count("n/a") == 3  # no coverage given: every coverage cell says so
    assert set(_read(site / "policy-mend-it.html").step_statuses()) == {"not run"}


def test_a_changed_or_broken_feature_is_said_so(tmp_path: Path, synthetic: Synthetic) -> None:
    features = tmp_path / "features"
    features.mkdir()
    mend = (synthetic.features / "mend-it.feature").read_text()
    (features / "mend-it.feature").write_text(mend.replace("A trusted", "A loyal"))
    (features / "say-sorry.feature").write_text(
        "Feature: x\n Scenario: y\n  Given a\n   | a | b |\n   | c |\n"
    )
    site = tmp_path / "site"
    book = build_handbook(site, synthetic.policies, features, synthetic.results)
    assert any("say-sorry.feature:5: " in line for line in summary_lines(book))
    page = _read(site / "policy-mend-it.html")
    assert page.statuses("data-scenario")["A loyal customer gets a replacement"] == "not run"
    assert "1 result(s) of the last run match no scenario of" in page.text
    broken = _read(site / "policy-say-sorry.html")
    assert "say-sorry.feature:5: " in broken.text and "inconsistent cell count" in broken.text
    assert _read(site / "index.html").statuses("data-policy")["say-sorry"] == "no spec"


def test_record_run_meta_stamps_the_results(tmp_path: Path) -> None:
    results = tmp_path / ".goodwill" / "last-run.cucumber.json"
    meta = record_run_meta(results, "abc")
    assert meta == tmp_path / ".goodwill" / "last-run.meta.json"
    assert json.loads(meta.read_text())["policy_set"] == "abc"
    results.write_text("[]")
    assert load_last_run(results).policy_set == "abc"
    assert Path(".goodwill/last-run.cucumber.json") == DEFAULT_RESULTS
    assert meta_path(tmp_path / "run.json") == tmp_path / "run.meta.json"


def test_a_bad_results_file_is_one_clear_error(tmp_path: Path, synthetic: Synthetic) -> None:
    bad = tmp_path / "r.json"
    for content, says in (("{oops", "cannot read test results"), ('{"a": 1}', "not pytest-bdd")):
        bad.write_text(content)
        with pytest.raises(HandbookError, match=says) as err:
            _build(tmp_path, synthetic, results=bad)
        assert "\n" not in str(err.value)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["docs", *args])
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_goodwill_docs_says_what_it_wrote(
    tmp_path: Path, synthetic: Synthetic, capsys: pytest.CaptureFixture[str]
) -> None:
    site, missing = tmp_path / "out", tmp_path / "none.json"
    inputs = ["--policies", str(synthetic.policies), "--features", str(synthetic.features)]
    code, out, err = _cli(capsys, "--out", str(site), *inputs, "--results", str(missing))
    assert code == 0, err
    assert f"wrote {site / 'index.html'}" in out and f"wrote {site / 'policy-mend-it.html'}" in out
    assert f"no test results at {missing}" in out and "3 policies (2 not run, 1 no spec)" in out

    code, out, err = _cli(capsys, "--out", str(site), "--policies", str(tmp_path / "nope"))
    assert (code, out, err) == (2, "", f"goodwill: no such policy directory: {tmp_path}/nope\n")
    no_specs = ["--features", str(tmp_path), "--results", str(missing)]
    code, out, err = _cli(capsys, "--out", str(site), *inputs[:2], *no_specs)
    assert code == 0 and "3 policies (3 no spec)" in out, err  # no feature files yet is fine
    code, out, err = _cli(capsys, "--out", str(site), *inputs[:2], "--features", "/nonexistent")
    assert (code, err) == (2, "goodwill: no such features directory: /nonexistent\n")


# --- in a real browser --------------------------------------------------------------------


@contextmanager
def _serve(site: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _chromium(tmp: Path, *args: str, timeout: float = 90) -> str:
    """Run headless Chromium once; its stdout. Its whole process group dies afterwards."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    out, err = tmp / f"{profile.name}.out", tmp / f"{profile.name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        cmd = [str(CHROMIUM), *flags, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert code == 0, f"chromium {args} exited {code}:\n{err.read_text()[-2000:]}"
    return out.read_text()


@pytest.mark.browser
def test_the_handbook_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"headless Chromium is needed at {CHROMIUM}: install it with "
            "`apt-get update && apt-get install -y chromium` (CI's .ci/run does)"
        )
    # The real policy set, with the results of a run of its features made here (not
    # whatever .goodwill/ holds from an earlier run): every policy's specs pass.
    results = tmp_path / "run" / "last-run.cucumber.json"
    results.parent.mkdir()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += [f"--cucumberjson={results}", str(REPO / "tests" / "bdd")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    dirs = (REPO / "policies", REPO / "features", results)
    site = tmp_path / "site"
    book = build_handbook(site, *dirs)
    expected = {p.id for p in load_policy_set(dirs[0]).policies}
    with _serve(site) as base:
        index = _Dom(_chromium(tmp_path, "--dump-dom", f"{base}/index.html"))
        shown = index.statuses("data-policy")
        assert shown == dict.fromkeys(expected, "passed"), "every policy is listed, passing"
        assert all(f"policy-{pid}.html" in {e.get("href") for e in index.elements} for pid in shown)
        specced = [d for d in book.policies if d.scenarios]
        assert specced, "at least one policy has scenarios to show"
        page = _Dom(_chromium(tmp_path, "--dump-dom", f"{base}/policy-{specced[0].policy.id}.html"))
        assert set(page.statuses("data-scenario")) == {s.name for s in specced[0].scenarios}
        assert page.step_statuses(), "the scenarios' steps are rendered with their status"
        for name, url in (
            ("index", "index.html"),
            ("policy", f"policy-{specced[0].policy.id}.html"),
        ):
            shot = tmp_path / f"{name}.png"
            _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", f"{base}/{url}")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert shot.stat().st_size > 20_000, f"{shot} looks blank"
