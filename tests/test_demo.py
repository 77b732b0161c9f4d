"""``make demo``: what a new user sees must fit the terminal and name the sample files."""

from __future__ import annotations

import contextlib
import io
import re

from mskus import demo
from tests.conftest import SAMPLE_DATA


def test_demo_output_fits_100_columns_and_names_the_sample_files(tmp_path):
    out = tmp_path / "demo-out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert demo.main(["--out", str(out), "--timeout", "120"]) == 0
    lines = printed.getvalue().splitlines()
    table = [line for line in lines if str(out) not in line]  # the last line names the (test's) folder
    assert max(len(line) for line in table) <= 100, max(table, key=len)
    # Images are named by their sample file, never by the UID the node stored them under.
    text = "\n".join(lines)
    assert not re.search(r"\(2\.25\.\d+\.dcm", text)
    measured = {name for name in re.findall(r"image (\S+\.dcm)", text)}
    expected = {p.name for p in SAMPLE_DATA.glob("*.dcm")}
    assert measured == expected
    assert sum(line.startswith("== SR received by the PACS: SR_") for line in lines) == 3
    assert any(line.strip().startswith("Echogenicity (Median)") for line in lines)
