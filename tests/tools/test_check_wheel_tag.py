"""tools/check_wheel_tag.py: the check CI runs on every repaired wheel."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "check_wheel_tag.py"
if not SCRIPT.exists():  # the tests were copied without the repository's tools/
    pytest.skip(f"{SCRIPT} is not here", allow_module_level=True)
spec = importlib.util.spec_from_file_location("check_wheel_tag", SCRIPT)
check_wheel_tag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_wheel_tag)

PLAT = "manylinux_2_36_aarch64"


@pytest.mark.parametrize("wheel", [
    "edgecore-0.1.0-cp311-cp311-manylinux_2_36_aarch64.whl",
    "edgecore-0.1.0-cp311-cp311-manylinux_2_34_aarch64.manylinux_2_36_aarch64.whl",
    "edgecore-0.1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux_2_36_aarch64.whl",
])
def test_intended_tags_pass(wheel):
    assert check_wheel_tag.tag_problem(wheel, PLAT) is None


@pytest.mark.parametrize(("wheel", "why"), [
    # what the broken auditwheel "auto" repair produced on a glibc 2.36 rootfs
    ("edgecore-0.1.0-cp311-cp311-manylinux_2_41_aarch64.whl", "lack the requested"),
    ("edgecore-0.1.0-cp311-cp311-manylinux_2_36_aarch64.manylinux_2_41_aarch64.whl", "newer glibc"),
    ("edgecore-0.1.0-cp311-cp311-linux_aarch64.whl", "lack the requested"),
    ("edgecore-0.1.0-cp311-cp311-linux_aarch64.manylinux_2_36_aarch64.whl", "not a manylinux tag"),
    ("edgecore-0.1.0-cp311-cp311-manylinux_2_34_x86_64.manylinux_2_36_aarch64.whl", "not for aarch64"),
    ("edgecore.tar.gz", "not a wheel"),
])
def test_wrong_tags_fail(wheel, why):
    assert why in check_wheel_tag.tag_problem(wheel, PLAT)


def test_main_exit_codes(capsys):
    assert check_wheel_tag.main(["x", "dist/edgecore-0.1.0-cp311-cp311-manylinux_2_36_aarch64.whl", PLAT]) == 0
    assert check_wheel_tag.main(["x", "edgecore-0.1.0-cp311-cp311-linux_aarch64.whl", PLAT]) == 1
    assert "wheel tag check failed" in capsys.readouterr().err
