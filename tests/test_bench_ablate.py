"""tools/bench_ablate.py: every variant's edits still fit bpf/ (each text to
replace occurs exactly once), and bad input is one line."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import bench_ablate  # noqa: E402

from lvsxdp import loader  # noqa: E402


@pytest.mark.parametrize("variant", bench_ablate.VARIANTS, ids=lambda v: v.name)
def test_edits_apply_once(variant, tmp_path):
    dst = tmp_path / "bpf"
    bench_ablate.apply_edits(loader.BPF_DIR, dst, variant.edits)
    for e in variant.edits:
        assert e.new in (dst / e.file).read_text()
    assert variant.ref == "unmodified" or variant.ref in {v.name for v in bench_ablate.VARIANTS}


def test_edit_that_does_not_fit_fails(tmp_path):
    with pytest.raises(bench_ablate.BenchError, match="occurs 0 times"):
        bench_ablate.apply_edits(loader.BPF_DIR, tmp_path / "bpf",
                                 [bench_ablate.Edit("conn.h", "no such text", "")])


@pytest.mark.parametrize("argv, says", [
    (["--only", "nosuch"], "no variant nosuch"),
    (["--calls", "5000"], "--calls must be"),
])
def test_bad_input_is_one_line(argv, says):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_ablate.py"), *argv],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert says in p.stderr and "Traceback" not in p.stderr
