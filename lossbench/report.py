"""``python -m lossbench.report``: the latest saved reproduction run as an HTML page and a Markdown summary.

Reads the newest ``.benchmarks/<machine>/NNNN_*.json`` written by ``pytest benchmarks
--benchmark-autosave`` (or the file given with ``--run``), the surfaces its ``extra_info`` points to,
and ``baselines/<scale>/``; writes ``report/index.html`` (self-contained: figures embedded) and
``report/summary.md`` (with the figures beside it as PNG files).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics as metrics_module
from .baselines import BaselineFileError, compare, load_baseline
from .claims import evaluate_claims

NO_RUNS = ("no saved benchmark runs under {where}; run `pytest benchmarks --benchmark-autosave` first "
           "(at the ci scale it trains the matrix and computes the surfaces in a few minutes)")


class ReportError(Exception):
    pass


def find_runs(bench_dir: Path) -> list[Path]:
    """Saved runs under ``bench_dir``, oldest first (pytest-benchmark numbers them per machine)."""
    runs = [p for p in bench_dir.glob("*/*.json") if p.name[:4].isdigit()]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name))


def load_run(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read benchmark run {path}: {exc}") from exc
    if "benchmarks" not in data:
        raise ReportError(f"{path} is not a pytest-benchmark file (no 'benchmarks' list)")
    return data


def reproduction_records(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per config of the reproduction, with its mean time."""
    out = []
    for b in run["benchmarks"]:
        info = b.get("extra_info", {})
        if "config_id" in info and "metrics" in info:
            out.append({**info, "seconds": b["stats"]["mean"], "name": b["name"]})
    return out


def kind_records(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """extra_info of the benchmarks of one kind (``eig-map``, ``trajectory``) with their mean time."""
    return [{**b["extra_info"], "seconds": b["stats"]["mean"]} for b in run["benchmarks"]
            if b.get("extra_info", {}).get("kind") == kind]


def grid_speed_rows(run: dict[str, Any]) -> list[list[Any]]:
    """One row per grid-speed benchmark (benchmarks/test_grid_speed.py): model, engine, seconds per point,
    speed-up over the authors' loop of the same model in the same run, GFLOP/s, share of peak, relative
    loss difference from the reference."""
    rows = [b for b in run["benchmarks"] if str(b.get("group") or "").startswith("grid:")
            and "engine" in b.get("extra_info", {})]
    authors = {b["extra_info"]["model"]: b["stats"]["mean"] for b in rows if b["extra_info"]["engine"] == "authors"}
    out = []
    for b in sorted(rows, key=lambda b: (b["extra_info"]["model"], -b["stats"]["mean"])):
        info, mean = b["extra_info"], b["stats"]["mean"]
        base = authors.get(info["model"])
        out.append([info["model"], info["engine"], info.get("device", "?"), mean,
                    None if base is None else base / mean, info.get("gflops"), info.get("share_of_peak"),
                    info.get("rel_diff_vs_reference")])
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, str]:
    """(HTML, Markdown) of one table."""
    h = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"
    for r in rows:
        h += "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>"
    h += "</table>"
    md = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(_fmt(c) for c in r) + " |\n" for r in rows)
    return h, md


@dataclass
class _Page:
    """What every section builder reads (the run, its records and surfaces) and where figures go."""

    run: dict[str, Any]
    run_path: Path
    records: list[dict[str, Any]]
    surfaces: dict[str, Any]
    eig_records: list[dict[str, Any]]
    scale: str
    bench_dir: Path
    baselines_dir: Path
    out_dir: Path
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    views: int = 0
    claims: list[Any] | None = None

    def view(self, name: str, fig, caption: str) -> str:
        """HTML of an interactive (plotly) view of ``fig``; the page embeds plotly.js once if it has any."""
        from .interactive import view_html

        self.views += 1
        return view_html(fig, f"view-{self.views}-{name}", caption)

    def figure(self, name: str, fig, caption: str) -> tuple[str, str]:
        """Save ``fig`` as ``name.png`` beside the summary; (HTML with it embedded, Markdown link)."""
        data = _png(fig)
        (self.out_dir / f"{name}.png").write_bytes(data)
        self.figures.append((name, data))
        b64 = base64.b64encode(data).decode()
        return (f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(name)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>", f"![{caption}]({name}.png)\n")

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({r["config"]["batch_size"] for r in self.records})


#: A section: (title, HTML body, Markdown body), or None when the run has nothing for it.
Section = tuple[str, str, str] | None


def page_claims(page: _Page):
    """The claims over the run's records, with the eigen-ratio maps, seeds and uncertainties the run
    stored and the paper's published test errors."""
    from .baselines import load_paper_numbers

    if page.claims is not None:
        return page.claims
    study = [r.get("record") or r for r in page.records]
    maps = {r["config_id"]: r.get("eig_record") or r["eig_summary"] for r in page.eig_records}
    try:
        published = load_paper_numbers(page.baselines_dir)["test_error_percent"]
    except (OSError, KeyError, json.JSONDecodeError):
        published = {}
    connections = {r["config_id"]: {"pairs": r["pairs"]} for r in kind_records(page.run, "connection")}
    spectra = {r["config_id"]: r["spectrum_record"] for r in kind_records(page.run, "spectrum")}
    page.claims = evaluate_claims(study, eig_maps=maps, published=published, connections=connections,
                                  spectra=spectra)
    return page.claims


_BOTH = ("seed recipe", "authors' recipe")

#: The paper's three contributions (its abstract and section 1), each with the claims that test it and
#: the recipes whose nets judge them (the filter-normalisation experiment's nets are of the seed recipe).
CONTRIBUTIONS = (
    ("Filter normalisation makes sharpness comparable: the flatter minimiser generalises better",
     "Figures 2-3", ("filter-normalised-sharpness-tracks-error", "sharpness-tracks-test-error"), ("seed recipe",)),
    ("Without skip connections the landscape turns from nearly convex to chaotic as depth grows",
     "Figures 5, 7", ("depth-nonconvex-without-skips", "depth-eig-ratio-without-skips"), _BOTH),
    ("Skip connections prevent it: deep nets with skips stay as convex as shallow ones",
     "Figures 5, 7", ("skips-prevent-nonconvexity", "skips-keep-deep-nets-as-convex-as-shallow",
                      "larger-eig-ratio-without-skips", "larger-eig-ratio-map-without-skips"), _BOTH),
)


def _reason(c) -> str:
    """One line on why a claim has its verdict: the deciding margins, the seeds it waits for, or the
    nets that did not reach a minimum."""
    from .claims import INCONCLUSIVE, UNRESOLVED, K

    if c.verdict == INCONCLUSIVE:
        stuck = [f"{cid} (train acc {v['train_acc']:.2f})" for cid, v in c.nets.items() if not v["converged"]]
        return "not at a minimum at every training seed: " + ", ".join(stuck)
    tests = c.tests
    margins = "; ".join(f"{t.margin:+.3g} ± {t.uncertainty:.2g}" for t in tests)
    if c.verdict == UNRESOLVED:  # the margin first: a note on left-out seeds is no reason by itself
        return f"margin {margins}: within {K:g} uncertainties" + (f"; {c.note}" if c.note else "")
    return f"margin {margins}"


def _recipe_label(group: str) -> str:
    return "authors' recipe" if group.startswith("authors-") else "seed recipe"


def contributions_section(page: _Page) -> Section:
    """The paper's three contributions, each with its verdict under each recipe and the one-line reason,
    above the full table of claims."""
    claims = page_claims(page)
    rows = []
    for title, paper, names, recipes in CONTRIBUTIONS:
        for recipe in recipes:
            these = [[c.key, c.verdict, _reason(c)] for c in claims
                     if c.name in names and _recipe_label(c.group) == recipe]
            # none: e.g. the authors' matrix before its nets are shipped
            for entry in these or [["—", "not measured in this run", ""]]:
                rows.append([title, paper, recipe, *entry])
                title = paper = ""  # the contribution once, its recipes and claims below it
    h, m = _table(["contribution", "paper", "recipe", "claim", "verdict", "why"], rows)
    departures = _authors_departures(page.records)
    note = ("The seed recipe is Adam as this project was asked for; the authors' recipe is theirs (SGD with "
            "Nesterov momentum, weight decay 5e-4, their initialisation)"
            + (f" with {' and '.join(departures)}, the departures calibrated in benchmarks/RESULTS.md (without them "
               "half the seeds of the plain ResNet-56 did not reach a minimum at the small scale)" if departures else "")
            + "; its depth matrix is judged on its own nets only. The filter-normalisation experiment's nets are "
            "SGD nets of the seed recipe's init.")
    return "The paper's three contributions", f"{h}<p>{html.escape(note)}</p>", f"{m}\n{note}\n"


def _authors_departures(records: list[dict[str, Any]]) -> list[str]:
    """How the authors'-recipe nets of a run depart from the authors' schedule, read from their configs:
    a linear warm-up (a fraction of the steps) and a gradient-norm clip, e.g. ["a 20 % warm-up", ...]."""
    from .claims import recipe_of

    configs = [r["config"] for r in records if recipe_of(r) == "authors"]
    warmups = sorted({float(c.get("warmup") or 0.0) for c in configs} - {0.0})
    clips = sorted({float(c.get("clip_grad_norm") or 0.0) for c in configs} - {0.0})
    return ([f"a {' / '.join(f'{100 * w:g}' for w in warmups)} % warm-up"] if warmups else []) + (
        [f"each step's gradient clipped to a global norm of {' / '.join(f'{c:g}' for c in clips)}"] if clips else [])


def verdicts_section(page: _Page) -> Section:
    """The claims as a reproduction: what the paper found (figure or table, its number where it gives
    one), our margin +- uncertainty over the direction pairs and on each, the verdict beside the recorded one; the
    decisive ones first, the ones the data cannot decide apart."""
    from .claims import FAILS, HOLDS, INCONCLUSIVE, UNRESOLVED, K, count_verdicts

    claims = page_claims(page)
    claims_path = page.baselines_dir / page.scale / "claims.json"
    recorded = json.loads(claims_path.read_text()).get("verdicts", {}) if claims_path.exists() else {}
    header = ["claim", "paper", "paper's number", "margin ± uncertainty over the direction pairs (pair 1; 2; ...)",
              "verdict", "recorded"]
    h, m = "", ""
    groups = ((f"Decided: |margin| > {K:g} × uncertainty", (HOLDS, FAILS)),
              ("Unresolved: some margin within its error, or too few training seeds to know it", (UNRESOLVED,)),
              ("Inconclusive: a net (some training seed) not at a minimum", (INCONCLUSIVE,)))
    for title, verdicts in groups:
        rows = [[c.key, c.paper, c.paper_number, c.summary() + (f" ({c.note})" if c.note else ""), c.verdict,
                 recorded.get(c.key, "not recorded")]
                for c in claims if c.verdict in verdicts]
        if not rows:
            continue
        th, tm = _table(header, rows)
        h += f"<h3>{html.escape(title)}</h3>{th}"
        m += f"**{title}**\n\n{tm}\n"
    def tally(cs) -> str:
        n = count_verdicts(cs)
        return (f"{n[HOLDS]} hold, {n[FAILS]} fail, {n[UNRESOLVED]} unresolved, "
                f"{n[INCONCLUSIVE]} inconclusive")

    authors = [c for c in claims if c.group.startswith("authors-")]
    by_recipe = ""
    if authors:
        by_recipe = (f" The depth matrix under the authors' recipe (groups authors-…): {tally(authors)}; "
                     f"everything else (the seed recipe, the filter-normalisation experiment, the paths, the "
                     f"curves): {tally([c for c in claims if not c.group.startswith('authors-')])}.")
    summary = (f"{tally(claims)}.{by_recipe} Each margin is positive when the paper's finding holds; its "
               f"uncertainty combines the spread over training seeds (their mean is compared), the sampling error of "
               f"the images, the spread over the random direction pairs (their mean is compared) and the numerical "
               f"error. A claim is decided only where every |margin| exceeds {K:g} uncertainties.")
    statements = "".join(f"<li><b>{html.escape(c.name)}</b> ({html.escape(c.paper)}): {html.escape(c.statement)}</li>"
                         for c in {c.name: c for c in claims}.values())
    return ("Verdicts", f"<p>{html.escape(summary)}</p>{h}<details><summary>what each claim tests</summary>"
            f"<ul>{statements}</ul></details>", f"{summary}\n\n{m}")


def landscape_grid_section(page: _Page) -> Section:
    """Every depth matrix's contours at the same levels, by depth and shortcut (paper Figure 5): the seed
    recipe's, then the authors' recipe's where its nets were measured."""
    from .claims import recipe_of

    h, m = "", ""
    for recipe, label in (("seed", ""), ("authors", "authors' recipe, ")):
        a, b = _contour_grids(page, [r for r in page.records if recipe_of(r) == recipe], label, recipe)
        h, m = h + a, m + b
    return "The landscapes side by side", h, m


def _contour_grids(page: _Page, seed: list[dict[str, Any]], label: str, recipe: str) -> tuple[str, str]:
    from . import plot

    depths = sorted({r["config"]["depth"] for r in seed})
    h, m = "", ""
    for bs in sorted({r["config"]["batch_size"] for r in seed}):
        panels = []
        for shortcut in (True, False):
            row = []
            for d in depths:
                rec = next((r for r in seed if (r["config"]["depth"], r["config"]["shortcut"],
                                                r["config"]["batch_size"]) == (d, shortcut, bs)), None)
                srf = page.surfaces.get(rec["config_id"]) if rec else None
                row.append(None if srf is None else {"alphas": srf.alphas, "betas": srf.betas,
                                                     "z": srf.values["train_loss"], "title": rec["config_id"]})
            panels.append(row)
        fig = plot.plot_contour_grid(panels, row_labels=["with shortcuts", "without shortcuts"],
                                     col_labels=[f"ResNet-{d}" for d in depths],
                                     suptitle=f"train loss on filter-normalised directions (pair 1), {label}batch size "
                                              f"{bs}; the same levels in every panel, 0.25 nats apart")
        name = f"contours-bs{bs}" if recipe == "seed" else f"contours-{recipe}-bs{bs}"
        a, b = page.figure(name, fig, f"Contours by depth and shortcut, {label}batch size {bs} (paper Figure 5)")
        h, m = h + a, m + b
    return h, m


def nets_section(page: _Page) -> Section:
    """Final loss and accuracy of every net, and whether it reached a minimum."""
    rows = [[r["config_id"], r["final"]["train_loss"], r["final"]["train_acc"], r["final"].get("test_acc"),
             r["converged"]] for r in page.records]
    h, m = _table(["net", "final train loss", "train acc", "test acc", "reached a minimum"], rows)
    note = "Reached a minimum: train accuracy at least 0.9 (eval mode)."
    return "Nets", f"{h}<p>{note}</p>", f"{m}\n{note}\n"


#: How the training-runs section names each recipe (:func:`lossbench.claims.recipe_of`).
RECIPE_NAMES = {"seed": "the seed recipe", "authors": "the authors' recipe",
                "other": "the SGD nets of the filter-normalisation experiment"}


def training_section(page: _Page) -> Section:
    """Every shipped training seed of the run's nets: its train accuracy per epoch and where it ended
    (one figure per recipe, a table of every run), so that a net judged not at a minimum is shown with
    the runs that show it."""
    from . import plot
    from .claims import MIN_SEEDS, recipe_of
    from .reference_nets import training_runs
    from .reproduce import CONVERGED_TRAIN_ACC
    from .train import FALL_FROM, FALL_RATIO, FALL_WINDOW, falls

    groups: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    rows = []
    for r in page.records:
        seed_zero = r["config_id"].endswith("-s0")  # a variant (e.g. channels-last) has no seeds of its own
        runs = training_runs(r["config_id"], page.baselines_dir, page.scale) if seed_zero else []
        if not runs:
            continue
        groups.setdefault(recipe_of(r), []).append((r["config_id"], runs))
        for run in runs:
            final = run.get("final") or {}
            fell = ", ".join(str(first) for first, _ in falls(run.get("history") or ())) or "none"
            rows.append([r["config_id"], run["seed"], len(run.get("history") or ()), final.get("train_acc"),
                         final.get("test_acc"), "yes" if run.get("converged") else "NO", fell,
                         (run.get("platform") or {}).get("cpu_capability", run.get("device_name", "?")),
                         round(float(run.get("wall_seconds", 0.0)) / 60, 1)])
    if not rows:
        return None
    h, m = "", ""
    for recipe, nets in groups.items():
        panels = []
        for config_id, runs in nets:
            lines = []
            for run in runs:
                history = run.get("history") or []
                final = run.get("final") or {}
                lines.append((f"seed {run['seed']}: {final.get('train_acc', np.nan):.3f} / {final.get('test_acc', np.nan):.3f}",
                              np.array([e["epoch"] for e in history]), np.array([e["train_acc"] for e in history]),
                              float(final.get("train_acc", np.nan)), bool(run.get("converged"))))
            panels.append((config_id, lines))
        name = RECIPE_NAMES.get(recipe, recipe)
        fig = plot.plot_training_runs(panels, threshold=CONVERGED_TRAIN_ACC,
                                      title=f"training runs of {name}: running train accuracy per epoch (train mode); "
                                            "dot and legend: final train / test accuracy (eval mode)")
        a, b = page.figure(f"training-{recipe}", fig, f"Training runs of {name}, every shipped seed "
                           f"(dashed: did not reach a minimum; dotted: train accuracy {CONVERGED_TRAIN_ACC:g})")
        h, m = h + a, m + b
    table_h, table_m = _table(["net", "training seed", "epochs", "train acc", "test acc", "reached a minimum",
                               "fell at epoch", "trained on", "wall (min)"], rows)
    note = (f"A run reached a minimum when its final train accuracy (eval mode, the whole training set) is at least "
            f"{CONVERGED_TRAIN_ACC:g}. A claim on a net whose seed 0 did not is inconclusive; a further seed that "
            f"did not is left out of the claim and named in its note, where seed 0 and at least {MIN_SEEDS} seeds in all "
            f"did. A run fell where its running train accuracy dropped to {FALL_RATIO:g} of its best of the "
            f"{FALL_WINDOW} epochs before or lower, from at least {FALL_FROM:g} (lossbench.train.falls): the first epoch of each.")
    return ("Training runs", f"<p>{html.escape(note)}</p>{h}<details><summary>every run ({len(rows)})</summary>"
            f"{table_h}</details>", f"{note}\n\n{m}\n{table_m}")


def metrics_section(page: _Page) -> Section:
    """Every metric of every net against its baseline (folded: long)."""
    from .reproduce import not_recomputed

    rows = []
    n_pass = n_fail = n_stored = 0
    for r in page.records:
        base_path = page.baselines_dir / page.scale / f"{r['config_id']}.json"
        try:
            base = load_baseline(base_path) if base_path.exists() else {"metrics": {}}
        except BaselineFileError as exc:
            rows.append([r["config_id"], "(file)", None, None, None, f"INVALID: {exc}"])
            n_fail += 1
            continue
        # the direction pairs the run took from the baseline (the scale's pair_check) are shown, not compared
        stored = not_recomputed(r.get("record") or r)
        for row in compare(r["metrics"], base, not_recomputed=stored):
            rows.append([r["config_id"], row.name, row.obtained, row.expected, row.tol, "pass" if row.ok else "FAIL"])
            n_pass += row.ok
            n_fail += not row.ok
        for name in stored:
            value = (base.get("metrics") or {}).get(name, {}).get("value")
            rows.append([r["config_id"], name, None, value, None, "stored, not recomputed"])
        n_stored += len(stored)
    h, m = _table(["config", "metric", "obtained", "baseline", "± tol", "check"], rows)
    doc = html.escape(metrics_module.__doc__ or "")
    return (f"Metrics against baselines ({n_pass} pass, {n_fail} fail, {n_stored} stored from the baseline "
            "and not recomputed: --lossbench-all-pairs recomputes them)",
            f"<details><summary>definitions</summary><pre>{doc}</pre></details>"
            f"<details><summary>every metric of every net ({len(rows)} rows)</summary>{h}</details>", m)


def views_section(page: _Page) -> Section:
    """A 3D view of each net's surface, clipped 5 nats above its minimum: the static figure beside the
    same surface to rotate (same colours; drawn on request, a browser holds only so many 3D views)."""
    from . import interactive, plot

    h, m = "", ""
    for r in page.records:
        s = page.surfaces.get(r["config_id"])
        if s is None:
            continue
        z = s.values["train_loss"]
        zmax = float(np.nanmin(z)) + 5.0
        fig = plot.plot_surface_3d(s.alphas, s.betas, z, zmax=zmax, title=r["config_id"])
        a, b = page.figure(f"3d-{r['config_id']}", fig, f"{r['config_id']}: 3D view (clipped 5 nats above the minimum)")
        view = page.view(f"3d-{r['config_id']}", interactive.surface_figure(
            s.alphas, s.betas, z, zmax=zmax, title=r["config_id"], label="train loss (nats)"),
            f"{r['config_id']}: drag to rotate, scroll to zoom")
        h, m = h + f'<div class="pair">{a}{view}</div>', m + b
    note = ("Each static view beside the same surface to rotate (the first drawn at load, the others when "
            f"their button is pressed; at most {interactive.MAX_LIVE} live at once).")
    return "3D views", f"<p>{note}</p>{h}", m + "\nInteractive versions of these views: `index.html`.\n"


def curves_section(page: _Page) -> Section:
    """The beta = 0 slice of every surface, one figure per batch size."""
    from . import plot

    h, m = "", ""
    for bs in page.batch_sizes:
        curves = {}
        for r in page.records:
            s = page.surfaces.get(r["config_id"])
            if s is None or r["config"]["batch_size"] != bs:
                continue
            j = int(np.argmin(np.abs(s.betas)))
            curves[r["config_id"]] = (s.alphas, s.values["train_loss"][:, j])
        if curves:
            fig = plot.plot_slices(curves, title=f"beta = 0 slice, batch size {bs}",
                                   loss_max=min(10.0, max(float(np.nanmax(c[1])) for c in curves.values())))
            a, b = page.figure(f"slices-bs{bs}", fig, f"1D slices through the minimum along delta, batch size {bs}")
            h, m = h + a, m + b
    return "1D curves", h, m


def filter_normalisation_section(page: _Page) -> Section:
    """The SGD nets' 1D random lines with and without normalisation, and the interpolation from the
    small- to the large-batch solution (paper section 4, Figures 2-3)."""
    from . import plot
    from .store import load_surface

    h, m = "", ""
    for norm in ("filter", "none"):
        curves = {}
        for r in page.records:
            for p in (r.get("record") or {}).get("line_paths", {}).get(norm, [])[:1]:
                path = page.bench_dir / p
                if path.exists():
                    line = load_surface(path)
                    curves[r["config_id"]] = (line.alphas, line.values["train_loss"])
        if curves:
            fig = plot.plot_slices(curves, title=f"1D random lines, norm={norm} (direction seed 0)",
                                   loss_max=min(10.0, max(float(np.nanmax(c[1])) for c in curves.values())))
            caption = f"The SGD nets along a random {norm}-normalised direction"
            if norm == "none":
                caption += (" (α in units of the raw Gaussian direction, over ± line_x × ||θ|| / ||δ||: the same "
                            "perturbations relative to each net's weights as the filter-normalised line)")
            a, b = page.figure(f"lines-{norm}", fig, caption)
            h, m = h + a, m + b
    for r in kind_records(page.run, "interpolation"):
        path = page.bench_dir / r["surface_path"]
        if path.exists():
            line = load_surface(path)
            fig = plot.plot_1d(line.alphas, {k: line.values[f"{k}_loss"] for k in ("train", "test")},
                               {k: line.values[f"{k}_acc"] for k in ("train", "test")},
                               title=f"{r['from']} (alpha 0) to {r['to']} (alpha 1)")
            a, b = page.figure(f"interpolation-wd{r['weight_decay']:g}", fig,
                               f"Linear interpolation between the batch-size solutions, weight decay {r['weight_decay']:g}")
            h, m = h + a, m + b
    return ("Filter normalisation", h, m) if h else None


def curvature_section(page: _Page) -> Section:
    """The Hessian at each minimum, the eigen-ratio maps beside their loss contours, the PCA paths."""
    from . import interactive, plot
    from .figures import trajectory_figure
    from .metrics import eig_ratio
    from .store import load_surface

    rows = [[r["config_id"], r["metrics"].get("eig_max"), r["metrics"].get("eig_min"),
             r["metrics"].get("eig_ratio_center"), r["metrics"].get("trace"),
             (r.get("curvature") or {}).get("trace_stderr"), r["metrics"].get("pca_var_1"),
             r["metrics"].get("pca_var_2")] for r in page.records]
    h, m = _table(["config", "lambda_max", "lambda_min", "|min/max|", "trace", "trace s.e.", "PCA var 1",
                   "PCA var 2"], rows)
    eig_html, eig_md = "", ""
    for r in page.eig_records:
        path = page.bench_dir / r["surface_path"]
        if not path.exists():
            continue
        em = load_surface(path)
        ratio = eig_ratio(em.values["min_eig"], em.values["max_eig"])
        a, b = page.figure(f"eig-{r['config_id']}", plot.plot_heatmap(
            em.alphas, em.betas, ratio, vmin=0.0, vmax=1.0, title=f"{r['config_id']}: |min_eig / max_eig|",
            label="|lambda_min / lambda_max|"), f"{r['config_id']}: eigen-ratio map (blue: convex)")
        view = page.view(f"eig-{r['config_id']}", interactive.surface_figure(
            em.alphas, em.betas, ratio, cmin=0.0, cmax=1.0, title=f"{r['config_id']}: |min_eig / max_eig|",
            label="|λ_min / λ_max|"), f"{r['config_id']}: the eigen-ratio map to rotate (same colours)")
        eig_html, eig_md = eig_html + f'<div class="pair">{a}{view}</div>', eig_md + b
        s = page.surfaces.get(r["config_id"])
        if s is not None:
            a, b = page.figure(f"eig-contour-{r['config_id']}", plot.plot_contour(
                s.alphas, s.betas, s.values["train_loss"], title=f"{r['config_id']}: train loss"),
                f"{r['config_id']}: the loss contours on the same plane")
            eig_html, eig_md = eig_html + a, eig_md + b
    eig_rows = [[r["config_id"], "x".join(map(str, r["grid"])), *[r["eig_summary"].get(k) for k in (
        "eig_ratio_mean", "eig_ratio_above_0.1", "eig_ratio_center", "eig_converged_fraction")],
        r["seconds_per_point"]] for r in page.eig_records]
    h2, m2 = _table(["config", "grid", "mean ratio", "share > 0.1", "centre", "converged", "s / point"], eig_rows)
    traj_html, traj_md = "", ""
    for r in kind_records(page.run, "trajectory"):
        path = page.bench_dir / r["surface_path"]
        if path.exists():
            fig = trajectory_figure(load_surface(path), title=r["config_id"])
            a, b = page.figure(f"trajectory-{r['config_id']}", fig,
                               f"{r['config_id']}: training path on its PCA plane (left) and on a random plane (right)")
            traj_html, traj_md = traj_html + a, traj_md + b
    return ("Curvature and paths", h + "<h3>Eigen-ratio maps</h3>" + h2 + eig_html + traj_html,
            m + "\n### Eigen-ratio maps\n\n" + m2 + "\n" + eig_md + traj_md)


#: The columns of the spectrum table: summary name -> header.
SPECTRUM_COLUMNS = {"spec_lambda_max": "lambda_max", "spec_outliers": "outliers", "spec_bulk_edge": "bulk edge",
                    "spec_outlier_ratio": "lambda_max / edge", "spec_negative_share": "negative share",
                    "spec_negative_share_err": "(probes s.e.)", "spec_negative_share_bound": "(quadrature bound)",
                    "spec_mean_eig": "tr(H) / n"}


def _stored_spectra(page: _Page) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(run record, stored file) of every spectrum the run checked whose file is at hand."""
    out = []
    for r in kind_records(page.run, "spectrum"):
        path = page.baselines_dir / page.scale / "spectrum" / f"{r['config_id']}.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if doc.get("density"):
            out.append((r, doc))
    return out


def spectrum_section(page: _Page) -> Section:
    """The Hessian spectra the run checked (beyond the paper): the summary numbers, the SLQ densities of
    the depth x skip nets overlaid per batch size (linear and log, as Ghorbani et al. draw them), and
    each net's plane of its top two eigenvectors beside its random filter-normalised plane."""
    from . import plot
    from .hessian import Spectrum

    stored = _stored_spectra(page)
    if not stored:
        return None
    rows = [[r["config_id"], *[doc["summary"].get(k) for k in SPECTRUM_COLUMNS],
             len((doc.get("spread") or {}).get("seeds", [0]))] for r, doc in stored]
    h, m = _table(["config", *SPECTRUM_COLUMNS.values(), "seeds"], rows)
    figs_html, figs_md = "", ""
    from .claims import recipe_of

    # one figure per recipe and batch size: a recipe's nets are compared with each other, as in the claims
    by_batch: dict[tuple[str, int], list] = {}
    for r, doc in stored:
        by_batch.setdefault((recipe_of(r), r["config"]["batch_size"]), []).append((r, doc))
    for (recipe, bs), nets in sorted(by_batch.items(), key=lambda kv: (kv[0][0] != "seed", kv[0])):
        whose = {"seed": "", "authors": "the authors' recipe, "}.get(recipe, f"{recipe} nets, ")
        name, said = f"spectra-{recipe + '-' if whose else ''}bs{bs}", f"{whose}batch {bs}"
        spectra = {r["config_id"]: Spectrum(np.array(d["density"]["nodes"], float),
                                            np.array(d["density"]["weights"], float), int(d["density"]["dim"]))
                   for r, d in nets}
        lo = min(s.span()[0] for s in spectra.values())
        hi = max(s.span()[1] for s in spectra.values())
        sigma = 0.01 * (hi - lo)
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 800)
        top = {r["config_id"]: np.array(d["top"]["values"], float)[np.array(d["top"]["converged"], bool)]
               for r, d in nets}
        a, b = page.figure(name, plot.plot_spectrum(
            {k: (grid, s.density(grid, sigma)) for k, s in spectra.items()}, top=top,
            title=f"Hessian eigenvalue densities, {said} (SLQ, width {sigma:.3g})"),
            f"{said}: the Hessian's eigenvalue density at each minimum (stochastic Lanczos quadrature over "
            f"{nets[0][1]['spectrum']['samples']} training images, {nets[0][1]['spectrum']['probes']} probes x "
            f"{nets[0][1]['spectrum']['steps']} steps; ticks: the top eigenvalues by Lanczos)")
        figs_html, figs_md = figs_html + a, figs_md + b
    for r, doc in stored:
        plane = doc.get("plane") or {}
        s = page.surfaces.get(r["config_id"])
        if "train_loss" not in plane or s is None:
            continue
        ratio = plane["radius"] / plane["theta_norm"]
        fig = plot.plot_planes(
            [("random filter-normalised plane", s.alphas, s.betas, s.values["train_loss"]),
             (f"top two eigenvectors (lambda {plane['eigenvalues'][0]:.3g}, {plane['eigenvalues'][1]:.3g})",
              np.array(plane["alpha"]), np.array(plane["beta"]), np.array(plane["train_loss"], float))],
            title=f"{r['config_id']}: train loss")
        a, b = page.figure(f"eigen-plane-{r['config_id']}", fig,
                           f"{r['config_id']}: the train loss on its random plane (left) and on the plane of its "
                           f"Hessian's top two eigenvectors (right, +-{ratio:.3g} ||theta||: where the train loss "
                           f"along the top one has risen by {plane['rise']:g} nat), same contour levels")
        figs_html, figs_md = figs_html + a, figs_md + b
    note = ("<p>Computed when the baselines were written (<code>python -m lossbench baselines --spectrum</code>); "
            "the run recomputed each net's top three eigenvalues and checked them against the stored ones. "
            "Negative share: sum of lambda^2 over the negative eigenvalues / sum of lambda^2 (SLQ), with the "
            "probes' standard error and the quadrature's bound.</p>")
    return ("Hessian spectra", note + h + figs_html, m + "\n" + figs_md)


def connectivity_section(page: _Page) -> Section:
    """The mode-connecting curves between training seeds: every seed pair's barriers (line and curve,
    with their sampling errors), and the first pair's paths as stored, beside the same paths to zoom."""
    from . import interactive, plot

    records = kind_records(page.run, "connection")
    if not records:
        return None
    rows, h, m = [], "", ""
    for r in records:
        for p in r["pairs"]:
            b, e = p["barrier"], p.get("barrier_error", {})
            rows.append([r["config_id"], "-".join(map(str, p["seeds"])), b["line"]["train"],
                         e.get("line", {}).get("train"), b["curve"]["train"], e.get("curve", {}).get("train"),
                         b["line"].get("test"), b["curve"].get("test")])
        paths = r["paths"]
        ts = np.asarray(paths["t"], float)
        values = {name: {k: np.asarray(v, float) for k, v in paths[name].items()} for name in ("line", "curve")}
        first = r["pairs"][0]
        title = f"{r['config_id']}: seeds {first['seeds'][0]} and {first['seeds'][1]}"
        a, b = page.figure(f"connect-{r['config_id']}", plot.plot_connection(ts, values, barriers=first["barrier"],
                                                                            title=title),
                           f"{title}: the straight line and the trained Bezier curve (BN statistics recomputed at each t)")
        view = page.view(f"connect-{r['config_id']}", interactive.paths_figure(ts, values, barriers=first["barrier"],
                                                                            title=title), f"{title}: zoom and hover")
        checked = r.get("checked", {}).get("metrics", {})
        note = ", ".join(f"{k} = {v:.4g}" for k, v in checked.items() if "_loss@" in k)
        h += f'<div class="pair">{a}{view}</div>' + (f"<p>Recomputed by this run: {html.escape(note)}.</p>" if note else "")
        m += b
    th, tm = _table(["config", "seeds", "line barrier (train, nats)", "± s.e.", "curve barrier", "± s.e.",
                     "line barrier (test)", "curve barrier (test)"], rows)
    intro = ("Garipov et al. (2018) and Draxler et al. (2018): minima of different training seeds, separated by a "
             "barrier on the straight line between them, are joined by a curve of low loss. Each seed pair's "
             "quadratic Bezier curve was trained when the baselines were written; this run recomputes the first "
             "pair's curve at a few points and checks it against the baseline. Barriers: max over t of the loss "
             "above the straight interpolation of the ends' losses; s.e.: from four disjoint image subsets.")
    return "Mode connectivity", f"<p>{html.escape(intro)}</p>{th}{h}", f"{intro}\n\n{tm}\n{m}"


def timings_section(page: _Page, history: list[Path], speed_run: Path) -> Section:
    """Grid times of this run, the grid-speed benchmarks of ``speed_run``, and earlier runs' times."""
    rows = [[r["config_id"], "x".join(map(str, r["grid"])), r["eval_samples"], r["seconds"],
             r["seconds_per_point"], r["images_per_second"]] for r in page.records]
    h, m = _table(["config", "grid", "images per point", "grid seconds", "s / point", "images / s"], rows)
    hist_rows = []
    for p in history:
        try:
            old = reproduction_records(load_run(p))
        except ReportError:
            continue
        for r in old:
            hist_rows.append([p.name, r["config_id"], r["seconds"], r.get("seconds_per_point", float("nan"))])
    h2, m2 = _table(["run", "config", "grid seconds", "s / point"], hist_rows)
    speed_html, speed_md = "", ""
    speed_rows = grid_speed_rows(page.run if speed_run == page.run_path else load_run(speed_run))
    if speed_rows:
        a, b = _table(["model", "engine", "device", "s / point", "vs authors' loop", "GFLOP/s", "share of peak",
                       "rel. diff vs reference"], speed_rows)
        note = f"from run {speed_run.name}"
        speed_html = f"<h3>Grid evaluation speed</h3><p>{html.escape(note)}</p>{a}"
        speed_md = f"\n### Grid evaluation speed\n\n{note}\n\n{b}"
    return "Timings", h + speed_html + "<h3>History</h3>" + h2, m + speed_md + "\n### History\n\n" + m2


def paper_section(page: _Page) -> Section:
    """The paper's published test errors, for comparison (baselines/paper/published.json)."""
    path = page.baselines_dir / "paper" / "published.json"
    if not path.exists():
        return None
    paper = json.loads(path.read_text())
    h, m = _table(["network", "test error (%)"], [[k, v] for k, v in paper["test_error_percent"].items()])
    return "The paper's published numbers", f"<p>{html.escape(paper['source'])}</p>{h}", f"{paper['source']}\n\n{m}"


def environment_section(page: _Page) -> Section:
    """The machine the run was measured on, as pytest-benchmark recorded it."""
    machine = page.run.get("machine_info", {})
    env = [[k, machine.get(k)] for k in ("node", "processor", "cpu", "python_version", "torch", "torch_threads",
                                          "cuda", "gpu", "system", "release") if k in machine]
    env = [[k, (v.get("brand_raw") if isinstance(v, dict) else v)] for k, v in env]
    h, m = _table(["", "value"], env)
    return "Environment", h, m


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; }
figcaption { font-size: 12px; color: #555; }
.pair { display: flex; flex-wrap: wrap; align-items: flex-start; } .pair > figure:first-child img { width: 420px; }
pre { white-space: pre-wrap; font-size: 12px; }
"""


def build_report(run_path: Path, *, bench_dir: Path, baselines_dir: Path, out_dir: Path,
                 history: list[Path], speed_run: Path | None = None) -> tuple[Path, Path]:
    """Write ``index.html`` and ``summary.md`` into ``out_dir``; returns both paths. ``speed_run``: the
    run whose grid-speed benchmarks are tabulated (default: ``run_path`` itself).

    The page is the sections in reading order: what a reader came for first (the verdicts, then the
    Figure-5 grid), then the nets, the metrics against baselines, the figures, timings and environment.
    """
    from .store import load_surface

    run = load_run(run_path)
    records = reproduction_records(run)
    if not records:
        raise ReportError(f"{run_path} holds no reproduction results (extra_info with config_id and metrics); "
                          "was it saved by `pytest benchmarks --benchmark-autosave`?")
    out_dir.mkdir(parents=True, exist_ok=True)
    surfaces = {}
    for r in records:
        path = bench_dir / r["surface_path"]
        surfaces[r["config_id"]] = load_surface(path) if path.exists() else None
    page = _Page(run=run, run_path=run_path, records=records, surfaces=surfaces,
                 eig_records=kind_records(run, "eig-map"), scale=records[0].get("scale", "ci"),
                 bench_dir=bench_dir, baselines_dir=baselines_dir, out_dir=out_dir)
    sections = [contributions_section(page), verdicts_section(page), landscape_grid_section(page), nets_section(page), training_section(page),
                metrics_section(page),
                views_section(page), curves_section(page), filter_normalisation_section(page),
                curvature_section(page), spectrum_section(page), connectivity_section(page), timings_section(page, history, run_path if speed_run is None else speed_run),
                paper_section(page), environment_section(page)]
    sections = [s for s in sections if s is not None]
    body = "".join(f'<h2 id="{_slug(title)}">{html.escape(title)}</h2>\n{h}' for title, h, _ in sections)
    head = (f"<p>Run <code>{html.escape(run_path.name)}</code> ({html.escape(str(run.get('datetime', '?')))}); "
            "reproduces Li et al., <i>Visualizing the Loss Landscape of Neural Nets</i> (NeurIPS 2018).</p>")
    title = f"lossbench report: {html.escape(page.scale)} scale"
    scripts = ""
    if page.views:  # plotly.js inside the page: it opens from disk, offline
        from .interactive import VIEW_STYLE, page_script, plotly_js

        scripts = f"<script>{plotly_js()}</script>\n<script>{page_script()}</script>\n<style>{VIEW_STYLE}</style>\n"
    html_page = (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title>\n'
                 f"<style>{PAGE_STYLE}</style>\n{scripts}</head><body>\n<h1>{title}</h1>\n{head}\n{body}\n</body></html>\n")
    md = (f"# lossbench report: {page.scale} scale\n\nRun `{run_path.name}` ({run.get('datetime', '?')}), "
          f"commit {run.get('commit_info', {}).get('id', '?')[:10]}.\n"
          + "".join(f"\n## {title}\n\n{m}\n" for title, _, m in sections))
    html_path = out_dir / "index.html"
    md_path = out_dir / "summary.md"
    html_path.write_text(html_page)
    md_path.write_text(md)
    return html_path, md_path


def _slug(title: str) -> str:
    """An anchor for a section title (``report/index.html#3d-views``)."""
    return "-".join("".join(ch if ch.isalnum() else " " for ch in title.lower()).split())


def _has(run: dict[str, Any] | None, extract) -> bool:
    """Whether ``extract`` finds something in a loaded run (None: unreadable)."""
    try:
        return run is not None and bool(extract(run))
    except (KeyError, TypeError):
        return False


def _load_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return load_run(path)
    except ReportError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.report",
        description="Turn the latest `pytest benchmarks --benchmark-autosave` run into a report: contour "
                    "grids like the paper's Figure 5, 3D views, 1D curves, metrics against baselines, the "
                    "paper's claims with verdicts, timings and the environment.",
        epilog="inputs: .benchmarks/<machine>/NNNN_*.json (pytest-benchmark autosave) and the surfaces it "
               "names under .benchmarks/surfaces/; baselines/<scale>/*.json.\n"
               "example: pytest benchmarks --benchmark-autosave && python -m lossbench.report",
    )
    parser.add_argument("--benchmarks", default=".benchmarks", help="pytest-benchmark storage (default .benchmarks)")
    parser.add_argument("--run", default=None, help="a specific saved run (default: the newest)")
    parser.add_argument("--baselines", default="baselines", help="baselines root (default baselines)")
    parser.add_argument("-o", "--output", default="report", help="output folder (default report)")
    parser.add_argument("--history", type=int, default=5, help="earlier runs to show in the timing history (default 5)")
    args = parser.parse_args(argv)
    bench_dir = Path(args.benchmarks)
    try:
        runs = find_runs(bench_dir) if bench_dir.is_dir() else []
        if args.run:
            run_path = Path(args.run)
        elif runs:
            # the newest run with reproduction results: a later `pytest benchmarks -k grid_speed` run
            # holds only timings, which are tabulated from it below
            loaded = {p: _load_or_none(p) for p in runs}
            full = [p for p in runs if _has(loaded[p], reproduction_records)]
            run_path = full[-1] if full else runs[-1]
        else:
            raise ReportError(NO_RUNS.format(where=bench_dir.resolve()))
        speed = [p for p in runs if _has(loaded[p], grid_speed_rows)] if not args.run else []
        speed_run = speed[-1] if speed else run_path
        earlier = [p for p in runs if p != run_path][-args.history:] if args.history else []
        html_path, md_path = build_report(run_path, bench_dir=bench_dir, baselines_dir=Path(args.baselines),
                                          out_dir=Path(args.output), history=earlier, speed_run=speed_run)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {html_path}\nwrote {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
