"""Package-level properties: light import, public API, CLI, atomic writes, provenance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import iimm
from iimm import _io
from iimm.provenance import config_hash, provenance


def test_import_needs_only_numpy():
    code = (
        "import sys, iimm, numpy as np; "
        "iimm.iimm(np.eye(3), np.eye(3), [0, 1, 2]); "
        "heavy = [m for m in ('torch', 'open_clip', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import iimm pulled in {out}"


def test_every_public_name_resolves():
    for name in iimm.__all__:
        assert getattr(iimm, name) is not None, name


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        iimm.nope  # noqa: B018


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "iimm", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: iimm" in out.stdout


def test_atomic_write_leaves_no_partial_file(tmp_path):
    dest = tmp_path / "sub" / "result.json"
    _io.atomic_write_json(dest, {"a": 1})
    assert json.loads(dest.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with _io.atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(dest.read_text()) == {"a": 1}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["result.json"]


def test_sha256_file(tmp_path):
    import hashlib

    p = tmp_path / "x.bin"
    p.write_bytes(b"abc" * 1000)
    assert _io.sha256_file(p, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_provenance_record():
    rec = provenance({"lr": 0.1, "model": "clip"}, seed=3)
    assert rec["seed"] == 3 and rec["config"] == {"lr": 0.1, "model": "clip"}
    assert rec["iimm_version"] == iimm.__version__
    assert rec["git_commit"]
    assert "numpy" in rec["libraries"] and "python" in rec["libraries"]
    json.dumps(rec)
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
