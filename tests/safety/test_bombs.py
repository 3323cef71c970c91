"""Size bombs are refused quickly, with bounded memory (peak RSS of a fresh process under 1 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, resource, shutil, sys, time
    from pathlib import Path
    from torchslim.core.errors import InputTooLargeError, ManifestError
    from torchslim.core.recipe import Recipe
    from torchslim.io import load

    base, work = Path(sys.argv[1]), Path(sys.argv[2])
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\\n' + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\\n" for p, c in zip("abcdefgh", "bcdefghi"))
    deeper = bomb + "j: &j [*i,*i,*i,*i,*i,*i,*i,*i,*i]\\n"
    results = {}

    def case(name, run):
        start = time.perf_counter()
        try:
            run()
            results[name] = "accepted"
        except (InputTooLargeError, ManifestError) as exc:
            results[name] = type(exc).__name__
        results[name + " seconds"] = time.perf_counter() - start

    for name, text in [("alias bomb", bomb), ("alias bomb x10", deeper)]:
        (work / "r.yaml").write_text(text)
        case(name, lambda: Recipe.from_file(work / "r.yaml"))
    results["alias bomb bytes"] = len(bomb.encode())

    def artifact(change):
        target = work / "a"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(base, target)
        manifest = json.loads((target / "torchslim.json").read_text())
        change(manifest)
        (target / "torchslim.json").write_text(json.dumps(manifest))
        return target

    prune = {"kind": "prune_channels", "version": 1, "ops": [{"cut": [["features.conv1", "x", "out", 0]],
             "idxs": "0-3000000000"}]}
    bombs = {
        "plan idxs 0-3000000000": lambda m: m.update(plan=[prune]),
        "codec 32768x32768": lambda m: m["codecs"]["features.conv1.weight"].update(shape=[32768, 32768]),
        "index codec 32768x32768": lambda m: m["codecs"]["classifier.weight"].update(shape=[32768, 32768]),
        "spec num_classes 3e7": lambda m: m["spec"]["kwargs"].update(num_classes=3e7),
        "spec num_classes 30000000": lambda m: m["spec"]["kwargs"].update(num_classes=30000000),
        "plan 10001 entries": lambda m: m.update(plan=[{"kind": "fold_bn"}] * 10001),
    }
    for name, change in bombs.items():
        path = artifact(change)
        case(name, lambda: load(path))
    # VmHWM is this process's own peak (reset by exec); ru_maxrss would include the forking parent's,
    # i.e. pytest's, peak on Linux
    status = Path("/proc/self/status")
    hwm = [line for line in status.read_text().splitlines() if line.startswith("VmHWM:")] if status.exists() else []
    peak_kb = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results["max_rss_mb"] = peak_kb / 1024
    print(json.dumps(results))
    """
)


def test_size_bombs_refused_with_bounded_memory(base_artifact: Path, tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(base_artifact), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    names = [k for k in report if not k.endswith("seconds") and k not in ("max_rss_mb", "alias bomb bytes")]
    assert len(names) == 8
    for name in names:
        assert report[name] in ("InputTooLargeError", "ManifestError"), (name, report[name])
        assert report[name + " seconds"] < 2.0, (name, report[name + " seconds"])
    assert report["alias bomb bytes"] < 500
    assert report["max_rss_mb"] < 1024, report
