"""The shared benchmark harness: alternating timing returns medians, results carry the header,
the deploy table marks where torchslim is behind, readme_tables renders a table from JSON."""

import json

import pytest


def test_summarize_takes_medians_and_per_round_ratios(harness):
    times = {"base": [10.0, 10.0, 40.0, 10.0, 10.0], "fast": [5.0, 5.0, 20.0, 5.0, 100.0]}
    out = harness.summarize(times, "base")
    assert out["base"] == {"ms": 10.0, "ratio": 1.0, "speedup": 1.0}
    assert out["fast"]["ms"] == 5.0  # the median, not the mean (which one outlier pulls to 27)
    # per-round ratios 0.5, 0.5, 0.5, 0.5, 10 -> median 0.5: a round slowed for both cancels out
    assert out["fast"]["ratio"] == 0.5
    assert out["fast"]["speedup"] == 2.0


@pytest.fixture
def fake_calls(harness, monkeypatch):
    """``(make, calls)``: ``make(name, ms)`` is a callable that takes exactly `ms` on a fake clock and
    records its name in ``calls``."""
    clock = [0]
    calls = []
    monkeypatch.setattr(harness.time, "perf_counter_ns", lambda: clock[0])

    def make(name, ms):
        def fn():
            calls.append(name)
            clock[0] += int(ms * 1e6)

        return fn

    return make, calls


def test_rotating_latency_times_every_callable_in_rotating_order(harness, fake_calls):
    make, calls = fake_calls
    fns = {"slow": make("slow", 4.0), "fast": make("fast", 1.0)}
    out = harness.rotating_latency(fns, "slow", rounds=5, threads=1, settle_ms=0)
    assert calls[:4] == ["slow", "slow", "fast", "fast"]  # two warm-up calls each
    assert calls[4:8] == ["slow", "fast", "fast", "slow"]  # the order rotates every round
    assert len(calls) == 4 + 2 * 5
    assert out["slow"] == {"ms": 4.0, "ratio": 1.0, "speedup": 1.0}
    assert out["fast"] == {"ms": 1.0, "ratio": 0.25, "speedup": 4.0}
    with pytest.raises(KeyError):
        harness.rotating_latency(fns, "missing", rounds=1, threads=1)


def test_each_timed_call_follows_untimed_calls_that_fill_the_settle_time(harness, fake_calls):
    make, calls = fake_calls
    fns = {"long": make("long", 30.0), "short": make("short", 4.0)}
    times = harness.rotating_times(fns, rounds=2, threads=1, settle_ms=20.0)
    assert times == {"long": [30.0, 30.0], "short": [4.0, 4.0]}
    rounds = calls[4:]  # after two warm-up calls each
    # round 1: long takes longer than the settle time, so it is timed at once; short runs 5 untimed
    # calls (5 x 4 ms = 20 ms) and then its timed one; round 2 starts with short
    assert rounds == ["long"] + ["short"] * 6 + ["short"] * 6 + ["long"]
    assert harness._settle_calls(0.5, 20.0) == 40
    assert harness._settle_calls(0.0, 20.0) == 200  # capped
    assert harness._settle_calls(5.0, 0.0) == 0


def test_results_json_has_the_header_fields(harness, tmp_path):
    results = harness.new_results(quick=True, threads=2)
    results["sections"]["x"] = {"value": 1}
    harness.write_results(tmp_path, "demo", results, "# demo\n")
    data = json.loads((tmp_path / "demo.json").read_text())
    env = data["env"]
    for field in harness.HEADER_FIELDS:
        assert field in env
    assert env["threads"] == 2 and "UTC" in env["date"]
    assert len(env["load_average"]) == 3
    assert env["machine"]["cpu"] and env["machine"]["cores"] >= 1
    assert env["versions"]["torch"] and env["versions"]["onnxruntime"]
    assert "torchslim_commit" in env["versions"] and "torch_pruning" in env["versions"]
    assert (tmp_path / "demo.md").read_text() == "# demo\n"
    # a script that built its own dict still gets the header
    harness.write_results(tmp_path, "bare", {"quick": False, "env": {"threads": 1}, "sections": {}}, "")
    bare = json.loads((tmp_path / "bare.json").read_text())["env"]
    assert bare["threads"] == 1 and "versions" in bare and "machine" in bare


def _rows():
    return {
        "PyTorch fp32 eager": {
            "who": "baseline",
            "group": "fp32",
            "runtime": "PyTorch eager",
            "b1": {"ms": 10.0, "speedup": 1.0},
        },
        "onnxruntime quantize_static": {
            "who": "peer",
            "group": "int8",
            "runtime": "onnxruntime",
            "b1": {"ms": 1.0, "speedup": 10.0},
            "graph": {"QuantizeLinear": 1, "DequantizeLinear": 1},
        },
        "torchslim int8": {
            "who": "torchslim",
            "group": "int8",
            "runtime": "onnxruntime",
            "b1": {"ms": 1.25, "speedup": 8.0},
            "graph": {"QuantizeLinear": 29, "DequantizeLinear": 30},
        },
        "Torch-Pruning 50% + quantize_static": {
            "who": "peer",
            "group": "pruned",
            "runtime": "onnxruntime",
            "b1": {"ms": 0.5, "speedup": 20.0},
        },
        "torchslim 50% channels + int8": {
            "who": "torchslim",
            "group": "pruned",
            "runtime": "onnxruntime",
            "b1": {"ms": 0.4, "speedup": 25.0},
        },
    }


def test_behind_column_names_every_row_where_torchslim_is_behind(deploy_report):
    rows = _rows()
    deploy_report.behind_column(rows, [1])
    assert rows["PyTorch fp32 eager"]["behind"] == "-"
    assert "torchslim behind at b1" in rows["onnxruntime quantize_static"]["behind"]
    assert "onnxruntime quantize_static" in rows["torchslim int8"]["behind"]
    assert "why: graph Q 29, DQ 30 vs Q 1, DQ 1" in rows["torchslim int8"]["behind"]
    assert rows["Torch-Pruning 50% + quantize_static"]["behind"] == "no"
    assert rows["torchslim 50% channels + int8"]["behind"] == "no"


def test_behind_column_names_the_trade_off_a_same_graph_and_a_faster_torchslim_row(deploy_report):
    rows = _rows()
    rows["torchslim int8"].update(graph={"QuantizeLinear": 1, "DequantizeLinear": 1}, cosine=0.999)
    rows["onnxruntime quantize_static"]["cosine"] = 0.99  # 10x the output error: named
    rows["torchslim int8 (OpenVINO)"] = {"who": "torchslim", "group": "int8", "b1": {"ms": 0.9, "speedup": 11.0}}
    deploy_report.behind_column(rows, [1])
    notes = rows["torchslim int8"]["behind"]
    assert "why: the same graph (Q 1, DQ 1) on the same runtime, so round-to-round noise" in notes
    assert "torchslim int8 (OpenVINO) is ahead (11.00x)" in notes
    assert "trade-off: its cosine to fp32 is 0.99, torchslim's 0.999" in notes
    rows = _rows()
    rows["torchslim int8"]["cosine"], rows["onnxruntime quantize_static"]["cosine"] = 0.999, 0.9988
    deploy_report.behind_column(rows, [1])
    assert "trade-off" not in rows["torchslim int8"]["behind"]  # a 1.2x error: not named


def test_behind_column_names_a_different_float_precision_as_the_reason(deploy_report):
    rows = {
        "peer": {"who": "peer", "group": "int8", "precision": "bf16", "b1": {"ms": 1.0, "speedup": 3.0}},
        "ours": {"who": "torchslim", "group": "int8", "precision": "f32", "b1": {"ms": 1.2, "speedup": 2.5}},
    }
    deploy_report.behind_column(rows, [1])
    assert "why: its float operations run in bf16" in rows["ours"]["behind"]
    assert "torchslim's in f32 for parity" in rows["ours"]["behind"]
    rows["ours"].update(runtime="onnxruntime", precision=None)
    rows["peer"]["runtime"] = "OpenVINO"
    deploy_report.behind_column(rows, [1])
    assert "why: another runtime, OpenVINO (bf16)" in rows["ours"]["behind"]


def test_behind_column_calls_a_difference_under_two_percent_a_tie(deploy_report):
    rows = _rows()
    rows["torchslim int8"]["b1"]["speedup"] = 9.9  # the peer: 10.0
    del rows["torchslim 50% channels + int8"]  # a failed row: nothing to compare the pruned peer with
    deploy_report.behind_column(rows, [1])
    assert rows["torchslim int8"]["behind"].startswith("b1: tie within 2%")
    assert rows["onnxruntime quantize_static"]["behind"].startswith("b1: tie within 2%")
    assert "no torchslim result" in rows["Torch-Pruning 50% + quantize_static"]["behind"]


def test_readme_tables_renders_a_table_from_a_small_json(harness, readme_tables, tmp_path):
    rows = _rows()
    results = harness.new_results(quick=False, threads=2)
    results["sections"]["resnet18"] = {"model": {"params": 11173962}, "rows": rows}
    results["published"] = [{"peer": "P", "model": "M", "figure": "2x", "source": "S"}]
    (tmp_path / "deploy_speed.json").write_text(json.dumps(results))
    text = readme_tables.render(tmp_path, quick=False)
    assert "Source: `benchmarks/results/deploy_speed.json`" in text
    assert results["env"]["date"] in text and "torch " in text
    assert "| variant | runtime | batch 1 | output cosine | torchslim behind? |" in text
    assert "| torchslim int8 | onnxruntime | 8.00x |" in text
    assert "not run here: P, M: 2x (S)" in text
    assert readme_tables.render(tmp_path, quick=True).strip() == ""  # no *_quick.json there


def test_md_table_escapes_pipes_and_newlines(harness):
    lines = harness.md_table(["a", "b"], [["x|y", None], ["error:\n  node", 1]])
    assert lines == ["| a | b |", "|---|---|", "| x/y |  |", "| error: node | 1 |"]


def _backend(name, ms, *, parity=True, base=None):
    return {
        "name": name,
        "available": True,
        "usable": parity,
        "parity_ok": parity,
        "latency": {"median_ms": ms},
        "baseline_latency": {"median_ms": base} if base else None,
    }


def test_backends_picks_the_fastest_backend_with_parity_and_the_table_says_which_failed(harness, backends_bench):
    backends = backends_bench
    row = [_backend("onnxruntime", 2.0, base=4.0), _backend("openvino", 1.0, parity=False), _backend("executorch", 1.5)]
    assert backends.picked_backend(row) == "executorch"
    assert backends.picked_backend([_backend("openvino", 1.0, parity=False)]) is None
    results = {
        "quick": True,
        "env": harness.environment(threads=2),
        "sections": {
            "m": {
                "settings": [
                    {
                        "batch": 32,
                        "threads": 2,
                        "picked": "executorch",
                        "best": "openvino",
                        "margin": 1.2,
                        "backends": row,
                    }
                ],
                "held_out_parity": {
                    "onnxruntime": {"max_steps": 0.5, "p99_steps": 0.1, "cosine": 0.99999, "top1_agreement": 1.0},
                    "executorch": {"error": "boom"},
                },
            }
        },
    }
    text = backends.markdown(results)
    line = next(x for x in text.splitlines() if x.startswith("| m | 32 | 2 |"))
    assert "2.000 / 4.000 (2.00x)" in line and "1.000 parity failed" in line
    assert line.endswith("| executorch | openvino |")  # picked (no margin: not the overall best), fastest
    assert "| m | executorch | boom |" in text and "| m | onnxruntime | 0.50 | 0.10 | 0.99999 | 1.000 |" in text


def test_readme_tables_renders_the_backends_table_with_the_pick_and_parity(harness, readme_tables, tmp_path):
    row = [_backend("onnxruntime", 2.0, base=4.0), _backend("executorch", 1.0, parity=False)]
    results = harness.new_results(quick=True, threads=2)
    results["sections"]["m"] = {
        "settings": [{"batch": 1, "threads": 1, "picked": "onnxruntime", "backends": row}],
        "held_out_parity": {"executorch": {"max_steps": 2.5, "p99_steps": 1.25, "cosine": 0.9, "top1_agreement": 1.0}},
    }
    (tmp_path / "backends_quick.json").write_text(json.dumps(results))
    text = readme_tables.render(tmp_path, quick=True, only=["backends"])
    assert "| m | 1 | 1 | 2.000 ms (2.00x of its fp32) |  | 1.000 ms, parity failed | onnxruntime |" in text
    assert "m on executorch: max 2.50 / p99 1.25 steps" in text


def test_backends_plot_has_the_int8_and_fp32_bars_of_every_runtime(backends_bench):
    row = [_backend("onnxruntime", 2.0, base=4.0), _backend("executorch", 1.0)]
    results = {"sections": {"m": {"settings": [{"batch": 32, "threads": 2, "backends": row}]}}}
    assert backends_bench.plot_groups(results) == {
        "m, batch 32, 2 thread(s)": {
            "torchslim int8, onnxruntime": 2.0,
            "fp32, onnxruntime": 4.0,
            "torchslim int8, executorch": 1.0,
        }
    }
