import shutil
import subprocess
import tempfile

from torchslim.report import Report
from torchslim.report.html import render_html, write_html


def sample_report():
    def layer(name: str, sparsity: float, bits: int) -> dict[str, object]:
        return {
            "name": name,
            "type": "Linear",
            "params": 100,
            "nonzero_params": int(100 * (1 - sparsity)),
            "macs": 100,
            "weight_bits": bits,
            "sparsity": sparsity,
        }

    before = {
        "accuracy": 0.9,
        "params": 200,
        "nonzero_params": 200,
        "macs": 200,
        "bytes": 4000,
        "latency_ms": 2.0,
        "latency_runtime": "pytorch-eager",
        "batch_size": 1,
        "threads": 2,
        "energy_uj": 1.5,
        "energy_source": "estimate (horowitz-45nm)",
        "layers": [layer("fc1", 0.0, 32), layer("fc2", 0.0, 32)],
    }
    after = dict(
        before,
        accuracy=0.80,
        nonzero_params=40,
        bytes=900,
        latency_ms=1.0,
        energy_uj=0.2,
        layers=[layer("fc1", 0.8, 8), layer("fc2", 0.8, 8)],
    )
    steps = [
        {
            "index": 0,
            "technique": "magnitude_pruning",
            "seconds": 1.0,
            "skipped": {"head": "excluded"},
            "info": {
                "sensitivity": {"sparsities": [0.0, 0.5, 0.9], "baseline": 0.9, "curves": {"fc1": [0.9, 0.89, 0.7]}}
            },
        }
    ]
    return Report(
        model="toy <mlp>",
        before=before,
        after=after,
        steps=steps,
        recipe={"version": 1, "steps": [{"technique": "magnitude_pruning", "config": {"sparsity": 0.8}}]},
        dataset="digits",
    )


def test_html_is_self_contained_and_escaped():
    html = render_html(sample_report())
    assert html.count('<img class="chart"') == 4
    assert "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html
    assert "toy &lt;mlp&gt;" in html and "toy <mlp>" not in html
    assert "-10.00 pts" in html and "0.225x" in html
    assert '<li class="verdict warning" data-kind="quality_drop">accuracy fell 10.00 points' in html
    assert 'data-warnings="1"' in html
    # the per-layer table: before -> after per column
    assert '<table class="layers" id="layers">' in html and "<td>fc1</td>" in html
    assert "<td>32 → 8</td>" in html and "<td>400 → 100</td>" in html
    assert "magnitude_pruning" in html and "sparsity: 0.8" in html


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_charts_render_in_headless_chromium(tmp_path):
    browser = _chromium()
    assert browser, "chromium is installed by `make test` (scripts/get-chromium.sh)"
    page = write_html(sample_report(), tmp_path / "report.html")
    profile = tempfile.mkdtemp(prefix="torchslim-chromium-")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-charts-expected="4"' in dom
    assert 'data-charts-rendered="4"' in dom
    # the warning is laid out with its warning style, and every per-layer row is on the page
    assert 'data-warnings-styled="1"' in dom
    assert 'data-layer-rows="2"' in dom
    assert "400 → 100" in dom  # weight bytes of fc1: 100 params at 32 -> 8 bits
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, "--window-size=1100,1400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 10_000
    # the warning's orange bar (#d9480f) is visible in the screenshot, near the top of the page
    from PIL import Image

    with Image.open(shot) as image:
        pixels = image.convert("RGB").crop((0, 0, image.width, 500)).getdata()
        orange = sum(1 for r, g, b in pixels if abs(r - 0xD9) < 12 and abs(g - 0x48) < 12 and abs(b - 0x0F) < 12)
    assert orange > 100
    shutil.rmtree(profile, ignore_errors=True)


def test_verdicts_say_what_did_not_improve():
    base = {
        "params": 100,
        "nonzero_params": 100,
        "macs": 1000,
        "bytes": 400,
        "latency_ms": 1.0,
        "latency_runtime": "onnxruntime",
    }
    slower_pruned = Report(model="m", before=base, after=dict(base, macs=500, latency_ms=1.0))
    assert any("did not make the model faster" in v.message for v in slower_pruned.verdicts())
    pruning = [{"index": 0, "technique": "magnitude_pruning"}]
    sparse = Report(model="m", before=base, after=dict(base, nonzero_params=10, latency_ms=0.99), steps=pruning)
    assert any("unstructured sparsity" in v.message for v in sparse.verdicts())
    good = Report(model="m", before=base, after=dict(base, macs=250, params=25, nonzero_params=25, latency_ms=0.3))
    assert good.verdicts() == []
    assert "did not make the model faster" in slower_pruned.render()


def test_structured_pruning_charts_parameters_kept_and_bits_both_sides():
    from torchslim.report.plots import kept_rows

    report = sample_report()
    report.after = dict(
        report.after,
        layers=[dict(report.before["layers"][0], params=50, nonzero_params=50)],  # fc1 halved, fc2 gone
    )
    assert [(r["name"], r["kept"]) for r in kept_rows(report.before["layers"], report.after["layers"])] == [
        ("fc1", 0.5),
        ("fc2", 0.0),
    ]
    page = render_html(report)
    assert "<td>100 → 50</td>" in page and "<td>100 → removed</td>" in page
    assert 'alt="Per-layer parameters kept"' in page and 'alt="Per-layer sparsity"' not in page


def test_recipe_shows_changed_settings_and_folds_defaults():
    import torchslim  # noqa: F401  (registers the techniques)
    from torchslim.report.details import split_recipe

    recipe = {
        "version": 1,
        "steps": [
            {
                "technique": "quantize",
                "targets": {"exclude": ["role:head"]},
                "config": dict(torchslim.quantization.Quantize().to_dict(), calibration_samples=64),
            }
        ],
    }
    (step,) = split_recipe(recipe)
    assert step["changed"] == {"calibration_samples": 64}
    assert "calibration_samples" not in step["defaults"] and len(step["defaults"]) > 5
    page = render_html(Report(model="m", before=sample_report().before, recipe=recipe))
    assert '<pre class="changed-settings">calibration_samples: 64</pre>' in page
    assert f"<summary>{len(step['defaults'])} setting(s) at their defaults</summary>" in page


def test_per_layer_table_shows_channels_kept_by_structured_pruning():
    from torchslim.report.details import layer_rows

    def conv(name, width, params):
        return {
            "name": name,
            "type": "Conv2d",
            "params": params,
            "macs": params * 10,
            "weight_bits": 32,
            "width": width,
        }

    before = {"layers": [conv("conv1", 16, 144), conv("conv2", 32, 4608)]}
    after = {"layers": [conv("conv1", 8, 72), conv("conv2", 16, 1152)]}
    columns, rows = layer_rows(before, after)
    assert columns[0] == "channels / features"
    assert [row["cells"][0] for row in rows] == ["16 → 8", "32 → 16"]


def test_measured_layers_carry_their_width():
    import torch

    from torchslim.measure import analyze

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3), torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 5))
    stats = analyze(model, example_input=torch.zeros(1, 1, 6, 6), repeats=1, warmup=0, energy_seconds=0.0)
    assert [layer.width for layer in stats.layers if layer.params] == [6, 5]


def test_step_line_says_which_settings_a_step_chose_and_why():
    from torchslim.report.table import step_line

    step = {
        "index": 1,
        "technique": "distill",
        "seconds": 2.0,
        "info": {"settings": {"chosen": "plain fine-tuning", "reason": "no KD setting beat plain on validation"}},
    }
    assert step_line(step).endswith("settings: plain fine-tuning (no KD setting beat plain on validation)")
    assert "settings" not in step_line({"index": 0, "technique": "quantize", "seconds": 1.0})
