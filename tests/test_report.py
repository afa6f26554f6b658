"""`stjax report`: per-row results against the run's own numbers and a loop over the log, escaping
of every string of the data and the run, the page in a real headless chromium (images load, no
console error, no request, no dialog), reports without the data, comparisons and user errors.

One tiny lstm_gat run (it has attention) on a CSV whose every item and one user are HTML, and one
tiny SASRec run (no attention) for the comparison."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import load_config
from stjax.report import compare_report, run_report
from stjax.runs import RunFolder
from stjax.train import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL_USER = "<img src=x onerror=alert(1)>"
EVIL_DIR = "<script>alert('config')</script>"


def evil_item(index: int) -> str:
    return f"<script>alert({index})</script>"


def write_log(path: Path) -> list[tuple]:
    """40 users x 14 check-ins on 30 items with coordinates and regions; every item's id is HTML."""
    rng = np.random.default_rng(7)
    rows = []
    for user in range(40):
        name = EVIL_USER if user == 0 else f"u{user}"
        home = rng.integers(0, 3)
        times = np.sort(rng.choice(10**6, 14, replace=False)) + 1_600_000_000
        for time in times:
            item = int(rng.integers(0, 10) + 10 * home) if rng.random() < 0.8 else int(rng.integers(0, 30))
            rows.append((name, evil_item(item), int(time), 40.0 + item / 10, -74.0 + item / 20,
                         f"<b>area {item // 10}</b>"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("user,item,timestamp,latitude,longitude,region\n")
        for row in rows:
            handle.write(",".join(f'"{value}"' if isinstance(value, str) else str(value) for value in row) + "\n")
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    data = base / EVIL_DIR / "checkins.csv"
    rows = write_log(data)
    graph = base / "graph"
    config = load_config(str(ROOT / "experiments" / "lstm_gat_synthetic.py") + ":tiny",
                         [f"--config.data.source={data}", "--config.data.format=csv"])
    train_and_evaluate(config, graph, log=lambda m: None, progress=False)
    sequence = base / "sasrec"
    config = load_config(str(ROOT / "experiments" / "sasrec_synthetic.py") + ":tiny", [])
    train_and_evaluate(config, sequence, log=lambda m: None, progress=False)
    return {"graph": graph, "sasrec": sequence, "data": data, "rows": rows, "base": base}


def test_rows_average_to_the_results_and_say_what_they_are_about(runs):
    folder = RunFolder(runs["graph"])
    rows = folder.rows()
    results = json.loads((runs["graph"] / "results.json").read_text())
    for name, value in results["test"].items():
        if "@" in name:
            assert float(rows[name].mean()) == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert len(rows["users"]) == results["test"]["num_users"]
    # What each row is about, written another way: a loop over the CSV's events of each user
    # (leave-one-out: the target is the last event, the history all the others).
    vocab = folder.vocab()
    by_user: dict[str, list] = {}
    for row in sorted(runs["rows"], key=lambda r: (r[0], r[2])):
        by_user.setdefault(row[0], []).append(row)
    regions = rows["about/regions"]
    for index, user_id in enumerate(rows["users"]):
        events = by_user[vocab["users"][user_id]]
        target, history = events[-1], events[:-1]
        assert vocab["items"][rows["targets"][index, 0]] == target[1]
        assert rows["about/history_length"][index] == len(history)
        assert rows["about/gap_seconds"][index] == target[2] - history[-1][2]
        assert rows["about/revisit"][index] == float(target[1] in {event[1] for event in history})
        assert regions[rows["about/region"][index]] == target[5]
        assert rows["about/latitude"][index] == pytest.approx(target[3], abs=1e-4)
        assert rows["about/longitude"][index] == pytest.approx(target[4], abs=1e-4)


@pytest.fixture(scope="module")
def page(runs):
    """The lstm_gat report with a drift analysis in its folder, made while the data are gone: the run
    folder is all it reads."""
    result = CliRunner().invoke(main, ["analyze", "drift", "--data", "synthetic", "--window", "28d", "--bootstrap",
                                       "30", "--out", str(runs["graph"] / "analysis")])
    assert result.exit_code == 0, result.output
    hidden = runs["data"].with_suffix(".away")
    runs["data"].rename(hidden)
    try:
        path, sections = run_report(runs["graph"], runs["base"] / "graph.html", users=[EVIL_USER])
    finally:
        hidden.rename(runs["data"])
    return path, {section.key: section for section in sections}


def test_report_has_every_section_without_the_data(page):
    _, sections = page
    for key in ("summary", "training", "metrics", "breakdowns", "map", "attention"):
        assert key in sections
    assert len(sections["training"].figures) == 2
    assert [figure.title for figure in sections["breakdowns"].figures] == [
        "Accuracy by history length", "Accuracy by region", "Accuracy by time since the previous event",
        "Accuracy on revisits and new items"]
    assert len(sections["map"].figures) == 1 and not sections["map"].missing
    assert sections["attention"].tables and sections["attention"].figures and not sections["attention"].missing
    drift = sections["analysis-0-drift"]
    assert drift.title == "Analysis: interest drift by time and region" and not drift.missing
    assert [figure.title for figure in drift.figures] == ["Global interest drift", "Drift of the largest regions",
                                                          "Regions against everyone"]
    assert drift.tables and "analyses" not in sections
    for section in sections.values():
        for figure in section.figures:
            assert figure.src.startswith("data:image/png;base64,") and figure.title and figure.caption


def test_every_string_of_the_data_and_the_run_is_escaped(page):
    html = page[0].read_text()
    assert "<script" not in html and "<img src=x" not in html and "<b>area" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the user's id, in the attention section
    assert "&lt;script&gt;alert(&#39;config&#39;)&lt;/script&gt;" in html  # the data path, a config value
    recommended = re.findall(r"&lt;script&gt;alert\((\d+)\)&lt;/script&gt;", html)
    assert len(recommended) >= 10, "the recommended items (all named <script>alert(N)</script>) are shown as text"


def test_report_renders_in_headless_chromium(page, tmp_path):
    assert CHROMIUM, "Debian's chromium is missing: `make test` installs it (scripts/install_chromium.sh)"
    from playwright.sync_api import sync_playwright

    url = page[0].resolve().as_uri()
    requests, console_errors, dialogs, page_errors = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            tab.on("request", lambda request: requests.append(request.url))
            tab.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
            tab.on("pageerror", lambda error: page_errors.append(str(error)))
            tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            tab.goto(url, wait_until="load")
            images = tab.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            text = tab.inner_text("body")
            shot = tmp_path / "report.png"
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(images) == sum(len(section.figures) for section in page[1].values())
    assert all(complete and width > 0 for complete, width in images), images
    assert console_errors == [] and page_errors == [] and dialogs == []
    assert [request for request in requests if request != url and not request.startswith("data:")] == []
    assert EVIL_USER in text and "<script>alert(" in text  # shown as text, run as nothing
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_without_attention_says_so_and_runs_compare(runs, page, tmp_path):
    _, sections = run_report(runs["sasrec"], tmp_path / "sasrec.html")
    attention = next(section for section in sections if section.key == "attention")
    assert attention.missing and "model 'sasrec' has none" in attention.missing[0]
    analyses = next(section for section in sections if section.key == "analyses")
    assert "no analysis outputs" in analyses.missing[0]  # the page says what it could not show
    # Outputs from elsewhere (--analyses DIR) join the page; a torn one is named, not fatal.
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(runs["graph"] / "analysis" / "drift.json", tmp_path / "elsewhere" / "drift.json")
    (tmp_path / "elsewhere" / "profiles.json").write_text("{not json")
    _, sections = run_report(runs["sasrec"], tmp_path / "sasrec.html", analysis_dirs=[tmp_path / "elsewhere"])
    keys = {section.key: section for section in sections}
    assert keys["analysis-0-drift"].figures and "unreadable" in keys["analysis-1-profiles"].missing[0]
    path, compared = compare_report([runs["graph"], runs["sasrec"]], tmp_path / "compare.html")
    html = path.read_text()
    assert "graph (lstm_gat)" in html and "sasrec (sasrec)" in html
    curves, metrics = compared
    assert [figure.title for figure in curves.figures] == ["Validation ndcg@10", "Training loss"]
    table = metrics.tables[0]
    ndcg10 = table.columns.index("@10")
    for label, run in (("graph (lstm_gat) test", runs["graph"]), ("sasrec (sasrec) test", runs["sasrec"])):
        row = next(r for r in table.rows if r[0] == label and r[1] == "ndcg")
        expected = json.loads((run / "results.json").read_text())["test"]["ndcg@10"]
        assert float(row[ndcg10]) == pytest.approx(expected, abs=5e-5)


def test_an_older_run_without_rows_is_told_how_to_get_them(runs, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(runs["sasrec"], copy)
    (copy / "test_rows.npz").unlink()
    _, sections = run_report(copy, tmp_path / "old.html")
    breakdowns = next(section for section in sections if section.key == "breakdowns")
    assert not breakdowns.figures and "stjax evaluate --workdir" in breakdowns.missing[0]
    result = CliRunner().invoke(main, ["evaluate", "--workdir", str(copy)])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(RunFolder(copy).rows()["ranks"], RunFolder(runs["sasrec"]).rows()["ranks"])


def test_cli_report_and_its_user_errors(runs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.html"
    result = runner.invoke(main, ["report", "--workdir", str(runs["sasrec"]), "--out", str(out)])
    assert result.exit_code == 0 and out.exists(), result.output
    result = runner.invoke(main, ["report", "--compare", str(runs["sasrec"]), str(runs["graph"]), "--out",
                                  str(tmp_path / "c.html")])
    assert result.exit_code == 0 and (tmp_path / "c.html").exists(), result.output
    for args, message in ((["report"], "give --workdir DIR"),
                          (["report", "--compare", str(runs["sasrec"])], "give two or more run folders"),
                          (["report", "--workdir", str(tmp_path)], "not a run folder"),
                          (["report", "--workdir", str(runs["sasrec"]), str(runs["graph"])], "unexpected")):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_history_bins_cover_every_row_with_integer_edges():
    from stjax.report.sections import history_bins

    lengths = np.array([1, 2, 3, 4, 10, 20, 30])
    index, labels = history_bins(lengths)
    assert labels == ["1-1", "2-2", "3-7", "8-17", "18-30"]
    for length, bin_ in zip(lengths, index):  # each row's length is inside its bin's label
        low, high = map(int, labels[bin_].split("-"))
        assert low <= length <= high
    index, labels = history_bins(np.array([5, 5, 5]))  # one length: one bin, not an empty one
    assert labels == ["5-5"] and index.tolist() == [0, 0, 0]
