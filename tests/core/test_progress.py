import io

import pytest

from torchslim.core.progress import phase


def test_phase_prints_start_and_duration():
    out = io.StringIO()
    with phase("step 1/2 quantize", quiet=False, stream=out):
        pass
    first, second = out.getvalue().splitlines()
    assert first == "> step 1/2 quantize ..."
    assert second.startswith("< step 1/2 quantize: ") and second.endswith(" s")


def test_phase_says_when_it_failed_and_reraises():
    out = io.StringIO()
    with pytest.raises(ValueError), phase("export", quiet=False, stream=out):
        raise ValueError("boom")
    assert "export: failed after" in out.getvalue()


def test_quiet_phase_prints_nothing():
    out = io.StringIO()
    with phase("timing", quiet=True, stream=out):
        pass
    assert out.getvalue() == ""
