"""Round trips against the reference implementation (the `safetensors`
package): files we write read back identically there, and files it writes
read back identically here."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecore.weights import SafetensorsError, load_safetensors, save_safetensors

safetensors = pytest.importorskip("safetensors")
torch = pytest.importorskip("torch")
from safetensors.numpy import save_file as reference_save  # noqa: E402
from safetensors.torch import save_file as reference_save_torch  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None)
_DIR = tempfile.mkdtemp(prefix="edgecore-roundtrip-")

NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint64,
                np.uint32, np.uint16, np.uint8, np.bool_]
names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12).filter(
    lambda s: s != "__metadata__")


@st.composite
def tensor_dicts(draw):
    result = {}
    bf16 = set()
    for name in draw(st.lists(names, max_size=6, unique=True)):
        dtype = draw(st.sampled_from(NUMPY_DTYPES))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        result[name] = draw(hnp.arrays(dtype, shape))
        if dtype == np.uint16 and draw(st.booleans()):
            bf16.add(name)
    return result, bf16


metadata_dicts = st.none() | st.dictionaries(names, st.text(max_size=10), max_size=3)


def torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN patterns included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@SETTINGS
@given(tensor_dicts(), metadata_dicts)
def test_written_here_read_by_the_reference(case, metadata):
    tensors, bf16 = case
    path = save_safetensors(os.path.join(_DIR, "ours.safetensors"), tensors, metadata,
                            dtypes=dict.fromkeys(bf16, "BF16"))
    with safetensors.safe_open(path, framework="pt") as f:
        assert set(f.keys()) == set(tensors)
        assert (f.metadata() or {}) == (metadata or {})
        for name, array in tensors.items():
            loaded = f.get_tensor(name)
            assert (loaded.dtype == torch.bfloat16) == (name in bf16)
            assert same(torch_to_numpy(loaded), array), name


@SETTINGS
@given(tensor_dicts(), metadata_dicts)
def test_written_by_the_reference_read_here(case, metadata):
    tensors, _ = case
    if not tensors and metadata == {}:
        metadata = None  # safetensors 0.8 writes invalid JSON here; see the test below
    path = os.path.join(_DIR, "reference.safetensors")
    reference_save(tensors, path, metadata=metadata)
    with load_safetensors(path) as f:
        assert set(f) == set(tensors)
        assert f.metadata == (metadata or {})
        for name, array in tensors.items():
            assert same(f[name], array), name
            assert f.info(name).aligned


def test_reference_writer_bug_is_refused_by_both_readers(tmp_path):
    # With no tensors and an empty metadata dict, the reference writer emits
    # '{},"__metadata__":{}}', which its own reader refuses too.
    path = tmp_path / "empty.safetensors"
    reference_save({}, str(path), metadata={})
    if path.read_bytes()[8:10] != b"{}":
        pytest.skip("this safetensors version writes valid JSON here")
    with pytest.raises(safetensors.SafetensorError):
        safetensors.safe_open(str(path), framework="np")
    with pytest.raises(SafetensorsError, match="not valid JSON"):
        load_safetensors(path)


def test_reference_bf16_reads_as_its_bits(tmp_path):
    values = torch.tensor([1.0, -2.5, 3.140625, float("inf")], dtype=torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    reference_save_torch({"w": values}, str(path))
    with load_safetensors(path) as f:
        assert f.info("w").dtype == "BF16"
        np.testing.assert_array_equal(f["w"], values.view(torch.int16).numpy().view(np.uint16))
        np.testing.assert_array_equal(f.to_float32("w"), values.float().numpy())


def test_writer_takes_any_layout_and_byte_order(tmp_path):
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensors = {"transposed": base.T, "big_endian": base.astype(">f4"), "strided": base[:, ::2]}
    path = save_safetensors(tmp_path / "layouts.safetensors", tensors)
    with safetensors.safe_open(path, framework="np") as f:
        for name, array in tensors.items():
            np.testing.assert_array_equal(f.get_tensor(name), array)
            assert f.get_tensor(name).dtype == array.dtype.newbyteorder("=")


def test_writer_rejects_what_it_cannot_store(tmp_path):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError, match="complex128"):
        save_safetensors(path, {"c": np.zeros(2, np.complex128)})
    with pytest.raises(TypeError, match="NumPy array"):
        save_safetensors(path, {"l": [1, 2]})
    with pytest.raises(ValueError, match="__metadata__"):
        save_safetensors(path, {"__metadata__": np.zeros(1)})
    with pytest.raises(TypeError, match="needs a uint16 array"):
        save_safetensors(path, {"w": np.zeros(2, np.float32)}, dtypes={"w": "BF16"})
    with pytest.raises(ValueError, match="not given"):
        save_safetensors(path, {"w": np.zeros(2, np.uint16)}, dtypes={"v": "BF16"})
    with pytest.raises(ValueError, match="not one of"):
        save_safetensors(path, {"w": np.zeros(2, np.uint16)}, dtypes={"w": "bf16"})
    with pytest.raises(TypeError, match="strings to strings"):
        save_safetensors(path, {}, {"k": 1})
    assert not path.exists()
    assert not list(tmp_path.iterdir()), "a failed write leaves no temporary file"
