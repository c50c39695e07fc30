"""Peak memory of real runs, measured in a subprocess (#13): a gland run with a squiggle far
beyond the slide and a nucleus run stay under fixed bounds, so a regression to region-sized
reads (a squiggle to 1e7 asked for terabytes) fails here instead of on a user's node."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.conftest import export_tiny_model

#: Bound on the child's peak resident memory: imports and ONNX Runtime take about 250-350 MB
#: here; a region of 8 gland patches adds tens of MB, a region-sized read would add terabytes.
PEAK_BOUND_MB = 900

#: The child's own high-water mark (VmHWM of its address space): ru_maxrss would carry over the
#: resident size of the pytest process it was forked from.
RUN = """
import sys
from nuclick_core.cli.main import main
code = main(sys.argv[1:])
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("PEAK_KB", hwm, "CODE", code)
"""


def _peak_mb(argv: list[str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", RUN, *argv], capture_output=True, text=True, timeout=300
    )
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("PEAK_KB")]
    assert line and line[-1].endswith("CODE 0"), done.stdout + done.stderr
    return int(line[-1].split()[1]) / 1024


@pytest.mark.slow
def test_gland_and_nucleus_runs_have_bounded_peak_memory(tmp_path, demo_scene, tiny_model):
    pytest.importorskip("torch")
    gland = export_tiny_model(
        tmp_path / "gland",
        object_type="gland",
        mpp=1.0,
        postprocess={"threshold": 0.5, "min_size": 20, "min_hole": 8},
    )
    img = np.full((300, 400, 3), 235, np.uint8)
    img[100:200, 100:300] = (90, 40, 110)
    Image.fromarray(img).save(tmp_path / "g.png")
    lines = [[[120, 150], [280, 150]], [[110, 110], [1e7, 190]], [[150, 120], [2000, 130]]]
    features = [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": ln}, "properties": {}}
        for ln in lines
    ]
    marks = tmp_path / "g.geojson"
    marks.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "g.parquet"
    argv = ["segment", "--slide", str(tmp_path / "g.png"), "--annotations", str(marks)]
    argv += ["--out", str(out), "--model", str(gland), "--object", "gland", "--mpp", "1.0"]
    peak = _peak_mb([*argv, "--threads", "1"])
    statuses = pq.read_table(out).sort_by("click_id").column("status").to_pylist()
    assert statuses[1:] == ["mark_too_large", "mark_too_large"] and len(statuses) == 3
    assert peak < PEAK_BOUND_MB, f"gland run peaked at {peak:.0f} MB"

    image, centres = demo_scene
    clicks = tmp_path / "c.csv"
    clicks.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in centres))
    argv = ["segment", "--slide", str(image), "--annotations", str(clicks), "--mpp", "0.5"]
    argv += ["--out", str(tmp_path / "n.parquet"), "--model", str(tiny_model), "--threads", "1"]
    peak = _peak_mb(argv)
    assert peak < PEAK_BOUND_MB, f"nucleus run peaked at {peak:.0f} MB"
