"""Installable anywhere: a wheel built from the checkout, installed into a fresh venv outside it, runs.

The wheel must carry every package of the source tree and the shipped
configuration and models as package data (read with importlib.resources), so
``mskus analyze`` in that venv, run from a folder that is not the checkout,
finds the protocol rules and measures with the learned model.

The fresh venv gets the dependencies from this test venv's site-packages
through a path file (no download; editable-install hooks there are not run),
and mskus itself only from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "01_nerve_mono.dcm"
SOURCE_PACKAGES = ("mskus", "pipeline", "dicom_node", "qa_review")


def _source_packages() -> set[str]:
    found = set()
    for top in SOURCE_PACKAGES:
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_every_source_package_is_listed_for_the_wheel():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _source_packages() <= listed, sorted(_source_packages() - listed)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build") / "src"
    # Build from a copy: the checkout keeps no build/ or *.egg-info left by this test.
    shutil.copytree(
        REPO, build,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "demo-out", "test-artifacts"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(build)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("mskus-*.whl")
    return path


def test_the_wheel_carries_the_packages_configs_and_models(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _source_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    for data in ("mskus_configs/protocols.yaml", "mskus_configs/segmentation.yaml", "mskus_configs/node.yaml",
                 "mskus_models/nerve_unet.onnx", "mskus_models/nerve_unet.json", "mskus_models/aponeurosis_unet.onnx"):
        assert data in names, data
    assert any(n.startswith("mskus_configs/reference/") and n.endswith(".yaml") for n in names)
    assert "qa_review/templates/study.html" in names


def test_installed_wheel_runs_analyze_with_the_learned_model(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    # Dependencies from this venv (no download); mskus itself only from the wheel.
    dependencies = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (Path(target) / "mskus-test-dependencies.pth").write_text("\n".join(dependencies) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", target, str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(SAMPLE, work / "nerve.dcm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSKUS_", "PYTHON"))}
    where = subprocess.run(
        [str(python), "-c", "import pipeline, pipeline.resources as r; print(pipeline.__file__); print(r.shipped_model('nerve_unet.onnx'))"],
        capture_output=True, text=True, cwd=work, env=env, timeout=120,
    )
    assert where.returncode == 0, where.stderr
    module, model = where.stdout.split()
    assert Path(module).is_relative_to(target) and Path(model).is_relative_to(target)
    out = work / "out"
    run = subprocess.run(
        [str(python), "-m", "mskus", "analyze", "nerve.dcm", "--out", str(out), "--json"],
        capture_output=True, text=True, cwd=work, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)
    area = [r for r in rows if r.get("measurement") == "cross_sectional_area"]
    assert area and area[0]["status"] == "measured" and area[0]["value"] > 0
    from pipeline.sr import read_measurement_report

    (report,) = out.glob("SR_*.dcm")
    groups = [g for g in read_measurement_report(report).groups if g.tracking_identifier.startswith("nerve contour")]
    assert groups and all(g.algorithm is not None and g.algorithm.name == "mskus-learned-nerve" for g in groups)
    assert not any(p.startswith("fallback=") for g in groups for p in g.algorithm.parameters)
