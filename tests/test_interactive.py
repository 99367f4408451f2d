"""Interactive views: the plotly figures carry the static figures' orientation and colours, pages
work offline, and a real (headless) browser draws every view of a report without a script error."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lossbench import interactive
from lossbench.report import main as report_main
from lossbench.store import save_surface
from lossbench.surface import Surface
from tests.test_report import fake_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")


def find_browser() -> str | None:
    """A Chromium-family browser: $LOSSBENCH_BROWSER, else the first of BROWSERS on the PATH."""
    named = os.environ.get("LOSSBENCH_BROWSER")
    if named:
        return shutil.which(named) or (named if os.path.exists(named) else None)
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def tilted_surface():
    """A surface whose value says where it is: z[i, j] = 10 a_i + b_j on an asymmetric grid."""
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    return alphas, betas, 10 * alphas[:, None] + betas[None, :]


def test_a_3d_view_is_oriented_and_coloured_as_the_static_figure():
    alphas, betas, z = tilted_surface()
    fig = interactive.surface_figure(alphas, betas, z, zmax=5.0, title="t")
    trace = fig.data[0]
    zz, cd = np.asarray(trace.z, float), np.asarray(trace.customdata, float)
    assert zz.shape == (len(betas), len(alphas))  # plotly reads z[row = y index, column = x index]
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            assert cd[j, i] == pytest.approx(10 * a + b)  # hover: the unclipped value at (alpha, beta)
            assert zz[j, i] == pytest.approx(min(10 * a + b, 5.0))  # heights clipped as the static 3D view
    # the colours of the static 3D view: viridis from the lowest value to the clip
    assert (trace.cmin, trace.cmax) == (pytest.approx(z.min()), 5.0)
    assert trace.colorscale[0][1].lower() == "#440154" and trace.colorscale[-1][1].lower() == "#fde725"
    assert "clipped at 5" in fig.layout.title.text


def test_a_view_survives_a_value_that_would_end_its_script_element():
    alphas, betas, z = tilted_surface()
    view = interactive.view_html(interactive.surface_figure(alphas, betas, z, title="a </script><b>x"), "v1")
    assert view.count("</script>") == 1  # only the element's own end
    assert interactive.spec_of(view)["layout"]["title"]["text"] == "a </script><b>x"


def test_the_report_embeds_plotly_once_and_one_view_per_surface(tmp_path):
    bench = fake_run(tmp_path)
    out = tmp_path / "report"
    assert report_main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert len(re.findall(r'class="lb-view lb-3d"', page)) == 4  # the four nets of the fake run
    assert page.count("Plotly.newPlot") >= 1 and page.count(interactive.plotly_js()[:200]) == 1
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched: it opens offline


@pytest.mark.parametrize("kind", ["surface", "line", "eig"])
def test_plot_interactive_writes_a_page_for_any_surface_file(tmp_path, kind):
    x = np.linspace(-1, 1, 7)
    if kind == "line":
        s = Surface.empty(x, None, ["train_loss", "train_acc"], attrs={})
        s.values["train_loss"][:] = x**2
        s.values["train_acc"][:] = 1.0
    else:
        keys = ["min_eig", "max_eig"] if kind == "eig" else ["train_loss", "train_acc"]
        s = Surface.empty(x, x, keys, attrs={})
        for k in keys:
            s.values[k][:] = np.add.outer(x**2, x) + (1.0 if k == "max_eig" else 0.0)
    s.done[:] = True
    path = tmp_path / f"{kind}.h5"
    save_surface(path, s)
    run = subprocess.run([sys.executable, "-m", "lossbench", "plot", str(path), "--interactive"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    html_path = tmp_path / f"{kind}-interactive.html"
    assert f"wrote {html_path}" in run.stdout
    page = html_path.read_text()
    spec = interactive.spec_of(page[page.index('<figure class="lb-view'):])
    assert spec["data"][0]["type"] == {"surface": "surface", "line": "scatter", "eig": "surface"}[kind]
    if kind == "eig":  # the ratio over [0, 1], as the static heat map
        assert (spec["data"][0]["cmin"], spec["data"][0]["cmax"]) == (0.0, 1.0)


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () { setTimeout(async function () {
  const views = [...document.querySelectorAll('.lb-view')];
  const drawn = [];
  for (const v of views) {
    try { window.lossbenchRender(v); } catch (e) { window.__errors.push('render: ' + e); }
    await new Promise(function (r) { setTimeout(r, 400); });
    drawn.push({id: v.dataset.spec, canvas: v.querySelectorAll('canvas').length,
                svg: v.querySelectorAll('.main-svg').length,
                nowebgl: v.textContent.includes('WebGL is not supported')});
  }
  const live = document.querySelectorAll('.lb-view.lb-3d[data-live]').length;
  const p = document.createElement('pre'); p.id = 'lossbench-probe';
  p.textContent = JSON.stringify({views: drawn, live: live, errors: window.__errors});
  document.body.appendChild(p);
}, 500); });
</script>"""


def open_in_browser(browser: str, page_path, tmp_path) -> tuple[dict, str]:
    """Open a copy of ``page_path`` with the probe above in headless Chromium, no network (a proxy that
    refuses everything); returns the probe's findings and the browser's console log."""
    page = page_path.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
           "--use-angle=swiftshader", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=60000", "--dump-dom", probed.as_uri()]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="lossbench-probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the page never finished (exit {run.returncode}); browser log tail:\n{run.stderr[-3000:]}"
    import html as html_module

    return json.loads(html_module.unescape(found.group(1))), run.stderr


@pytest.mark.skipif(find_browser() is None, reason="no Chromium-family browser on this machine (apt-get install "
                                                   "chromium, or set LOSSBENCH_BROWSER): the report is not opened")
def test_the_report_draws_every_view_in_a_real_browser_without_a_script_error(tmp_path):
    bench = fake_run(tmp_path)
    out = tmp_path / "report"
    assert report_main(["--benchmarks", str(bench), "--baselines", str(tmp_path / "baselines"), "-o", str(out)]) == 0
    found, log = open_in_browser(find_browser(), out / "index.html", tmp_path)
    uncaught = [line for line in log.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert found["errors"] == [] and uncaught == [], (found["errors"], uncaught)
    assert len(found["views"]) == 4
    for v in found["views"]:
        assert v["canvas"] >= 1 and v["svg"] >= 1 and not v["nowebgl"], v  # a WebGL scene with its axes
    assert 1 <= found["live"] <= interactive.MAX_LIVE


@pytest.mark.skipif(find_browser() is None, reason="no Chromium-family browser on this machine (apt-get install "
                                                   "chromium, or set LOSSBENCH_BROWSER): the page is not opened")
def test_a_page_of_more_views_than_a_browser_keeps_releases_the_oldest(tmp_path):
    """A report holds 20 or more 3D views; a browser keeps about 16 WebGL contexts and then drops the
    oldest, blanking views: the page must keep at most MAX_LIVE alive however many are drawn."""
    alphas, betas, z = tilted_surface()
    views = [(f"view {i}", interactive.surface_figure(alphas, betas, z + i, title=f"v{i}")) for i in range(18)]
    path = tmp_path / "many.html"
    path.write_text(interactive.page_html(views, title="many"))
    found, log = open_in_browser(find_browser(), path, tmp_path)
    assert found["errors"] == [], found["errors"]
    assert all(v["canvas"] >= 1 and not v["nowebgl"] for v in found["views"]), found["views"]
    assert found["live"] == interactive.MAX_LIVE
    assert "Too many active WebGL contexts" not in log
