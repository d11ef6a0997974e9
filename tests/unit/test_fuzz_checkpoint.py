"""Hostile torch checkpoints: the DAC readers load them or raise their own errors.

Seeded mutations of release-format checkpoints (``{"state_dict", "metadata": {"kwargs"}}``,
written by the exporter in both weight-norm key styles) and of a bare state_dict: byte
flips, truncations, insertions and deletions of the file; zip members truncated, extended,
flipped, dropped, duplicated or compressed; opcode edits of ``data.pkl`` and planted pickles
(2100 through `read_checkpoint`, i.e. `load_torch_checkpoint` and the structure
checks); and edits of the loaded objects (tensor shapes and dtypes, keys, metadata values;
about 100 through `convert_checkpoint`). Every outcome must be a result or a
`CheckpointError` / `ConversionError` naming the file. The seeds are fixed.
"""

from __future__ import annotations

import io
import random
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import checkpoint_files, errors
from converters import dac as dac_converter
from jaxlatent.models.dac import DAC, DACConfig
from tests import fuzz, reference

torch = reference.torch()

CONFIG = DACConfig(
    encoder_dim=2,
    encoder_rates=(2,),
    latent_dim=4,
    decoder_dim=4,
    decoder_rates=(2,),
    n_codebooks=2,
    codebook_size=4,
    codebook_dim=2,
    sample_rate=800,
)
OWN_ERRORS = (errors.CheckpointError, errors.ConversionError)
LOADS_PER_KIND = 300


def _model() -> DAC:
    graphdef, state = nnx.split(nnx.eval_shape(lambda: DAC(CONFIG, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    flat = [
        (path, var.replace(jnp.asarray(rng.uniform(0.5, 1.5, var.get_value().shape), jnp.float32)))
        for path, var in nnx.to_flat_state(state)
    ]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Release-format files in both key styles and a bare state_dict, as bytes."""
    folder = tmp_path_factory.mktemp("fuzz_ckpt")
    model = _model()
    out = []
    for style in ("legacy", "parametrizations"):
        path = folder / f"{style}.pth"
        dac_converter.export_release_checkpoint(model, None, path, style=style)
        out.append(path.read_bytes())
    buf = io.BytesIO()
    torch.save(torch.load(io.BytesIO(out[0]), weights_only=True)["state_dict"], buf)
    return [*out, buf.getvalue()]


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(name, archive.read(name)) for name in archive.namelist()]


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buf.getvalue()


def mutate_member(rng: random.Random, data: bytes) -> bytes:
    members = _members(data)
    k = rng.randrange(len(members))
    name, member = members[k]
    kind = rng.randrange(6)
    if kind == 0:
        member = member[: rng.randrange(len(member) + 1)]
    elif kind == 1:
        member += bytes(rng.randrange(1, 64))
    elif kind == 2:
        member = fuzz.flip(rng, member)
    elif kind == 3:
        return _zip(members[:k] + members[k + 1 :])
    elif kind == 4:
        return _zip(members, zipfile.ZIP_DEFLATED)
    else:
        return _zip([*members, (name + "x", member)])
    members[k] = (name, member)
    return _zip(members)


def mutate_pickle(rng: random.Random, data: bytes) -> bytes:
    members = _members(data)
    for k, (name, member) in enumerate(members):
        if name.endswith("data.pkl"):
            for _ in range(rng.randint(1, 3)):
                member = fuzz.mutate_pickle(rng, member)
            members[k] = (name, member)
    return _zip(members)


PLANTED = [
    b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R.",
    b"\x80\x02cbuiltins\neval\nX\x03\x00\x00\x001+1\x85R.",
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.",
    b"\x80\x02}(X\x0a\x00\x00\x00state_dictK\x01u.",
    b"\x80\x02}(X\x0a\x00\x00\x00state_dict}(K\x01K\x02uu.",
    b"\x80\x02]q\x00(h\x00e.",
    b"\x80\x02N.",
    b"\x80\x02(K\x01Q.",
]


def plant(rng: random.Random, data: bytes) -> bytes:
    members = [
        (name, rng.choice(PLANTED) if name.endswith("data.pkl") else member)
        for name, member in _members(data)
    ]
    return _zip(members)


MUTATORS = {**fuzz.BYTE_MUTATORS, "member": mutate_member, "pickle": mutate_pickle}


def _outcome(path, call) -> str:
    try:
        call(path)
    except OWN_ERRORS as e:
        assert str(path) in str(e), str(e)[:500]
        return "refused"
    return "loaded"


@pytest.mark.parametrize("kind", [*MUTATORS, "planted"])
def test_mutated_files_load_or_raise_own_errors(kind, seeds, tmp_path):
    rng = random.Random(f"checkpoint-{kind}")
    mutate = plant if kind == "planted" else MUTATORS[kind]
    path = tmp_path / "fuzzed.pth"
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(LOADS_PER_KIND):
        path.write_bytes(mutate(rng, seeds[i % len(seeds)]))
        outcomes[_outcome(path, dac_converter.read_checkpoint)] += 1
    assert outcomes["refused"] > 0, outcomes


def mutate_objects(rng: random.Random, data: bytes) -> bytes:
    """Edits of the loaded checkpoint: shapes, dtypes, keys, metadata values."""
    obj = torch.load(io.BytesIO(data), weights_only=True)
    bare = "state_dict" not in obj
    state_dict = dict(obj if bare else obj["state_dict"])
    kwargs = None if bare else dict(obj["metadata"]["kwargs"])
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(sorted(state_dict))
        kind = rng.randrange(8 if kwargs is not None else 6)
        if kind == 0:
            state_dict[key] = torch.zeros([rng.randint(1, 3) for _ in range(rng.randint(0, 4))])
        elif kind == 1:
            dtype = rng.choice([torch.int64, torch.bool, torch.float64, torch.bfloat16])
            state_dict[key] = state_dict[key].to(dtype)
        elif kind == 2 and len(state_dict) > 1:
            del state_dict[key]
        elif kind == 3:
            state_dict[key + rng.choice(["x", "_g", ".weight", ".weight_v"])] = state_dict.pop(key)
        elif kind == 4:
            state_dict[key] = state_dict[key].reshape(-1)
        elif kind == 5:
            state_dict[key] = state_dict[key].unsqueeze(0)
        elif kind == 6:
            value = rng.choice([0, -1, 3, 2**40, None, "a", [], [0], [2, 2, 2], 0.5, True, [1.5]])
            kwargs[rng.choice([*sorted(kwargs), "bogus"])] = value
        else:
            kwargs = None
    out = state_dict if kwargs is None and rng.random() < 0.5 else {"state_dict": state_dict}
    if kwargs is not None:
        out["metadata"] = {"kwargs": kwargs}
    buf = io.BytesIO()
    torch.save(out, buf)
    return buf.getvalue()


def test_edited_checkpoints_convert_or_raise_own_errors(seeds, tmp_path):
    rng = random.Random("checkpoint-objects")
    path = tmp_path / "edited.pth"
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(100):
        path.write_bytes(mutate_objects(rng, seeds[i % len(seeds)]))
        outcomes[
            _outcome(path, lambda p: dac_converter.convert_checkpoint(p, sample_rate=800))
        ] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_seeds_convert(seeds, tmp_path):
    path = tmp_path / "seed.pth"
    for data in seeds:
        path.write_bytes(data)
        config, _ = dac_converter.convert_checkpoint(path, sample_rate=800)
        assert config == CONFIG


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_memory_bombs_are_refused_before_allocation(seeds, tmp_path):
    """Sizes that torch or the converter would allocate are checked against the file first."""
    obj = torch.load(io.BytesIO(seeds[0]), weights_only=True)
    key = "encoder.block.0.bias"
    # a broadcast view: 4 stored bytes that a copy would turn into 40 GB
    bomb = {"state_dict": obj["state_dict"] | {key: torch.zeros(1).expand(10**5, 10**5)}}
    with pytest.raises(errors.CheckpointError, match=r"more than \d+ bytes"):
        dac_converter.read_checkpoint(
            _save(bomb | {"metadata": obj["metadata"]}, tmp_path / "a.pth")
        )
    # a compressed member (a zip bomb inflates ~1000x)
    deflated = tmp_path / "b.pth"
    deflated.write_bytes(_zip(_members(seeds[0]), zipfile.ZIP_DEFLATED))
    with pytest.raises(errors.CheckpointError, match="compressed"):
        checkpoint_files.load_torch_checkpoint(deflated)
    # the format before torch 1.6 allocates the storage sizes it declares before reading them
    legacy = tmp_path / "c.pth"
    torch.save(obj, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(errors.CheckpointError, match="not a whole zip archive"):
        checkpoint_files.load_torch_checkpoint(legacy)
    # a billion codebooks in the metadata: refused before a table or model of that size
    kwargs = obj["metadata"]["kwargs"] | {"n_codebooks": 10**9}
    many = _save(
        {"state_dict": obj["state_dict"], "metadata": {"kwargs": kwargs}}, tmp_path / "d.pth"
    )
    with pytest.raises(errors.CheckpointError, match="n_codebooks=1000000000 exceed"):
        dac_converter.convert_checkpoint(many)


def test_state_dict_values_must_be_dense_real_tensors(seeds, tmp_path):
    obj = torch.load(io.BytesIO(seeds[0]), weights_only=True)
    key = "encoder.block.0.bias"
    for value, message in [
        (obj["state_dict"][key].to(torch.complex64), "complex64"),
        (obj["state_dict"][key].to_sparse(), "sparse"),
        (torch.Size([2]), "Size"),
    ]:
        edited = {"state_dict": obj["state_dict"] | {key: value}, "metadata": obj["metadata"]}
        with pytest.raises(errors.CheckpointError, match=message):
            dac_converter.convert_checkpoint(_save(edited, tmp_path / "e.pth"))
