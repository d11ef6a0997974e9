"""One-command accelerator report: versions, DAC parity, matmul peak vs VQ search, the benches.

Run from the repository root on whatever backend JAX finds (CPU, GPU, TPU)::

    python benchmarks/accelerator_report.py            # full: about 8 minutes on one H100
    python benchmarks/accelerator_report.py --tiny     # tiny sizes: checks that it all runs

and it writes ``benchmarks/results/<backend>-report.md`` (``--out`` elsewhere). Sections
(``--sections`` picks some; each runs in its own subprocess, so a failure or a timeout of one
is recorded in the report and the others go on; the report is rewritten atomically after
every section, so a run cut off keeps what it measured):

* ``environment``: the machine, python, jax / jaxlib / flax / numpy / torch / dac versions,
  JAX's backend and devices, torch's device (CUDA, cuDNN), ``nvidia-smi``'s GPU line.
* ``parity``: the four released DAC variants (44 kHz 8 kbps, 44 kHz 16 kbps, 24 kHz, 16 kHz;
  random weights by the reference code, ``dac.DAC(**kwargs).save(path, package=False)``, torch
  seed 0) through ``jaxlatent parity dac``'s machinery
  (:func:`converters.dac_parity.parity_report`: the production converter, the bundled speech,
  stage by stage) at two precisions, ``highest`` and ``default`` (`PRECISIONS`): jaxlatent's
  convolutions at ``jax.lax.Precision.HIGHEST`` / ``DEFAULT``; torch on its CUDA device when
  it has one, with TF32 off / on (``allow_tf32`` of cuBLAS and cuDNN), else on the CPU in
  float32 for both. Reported: codes equal (all codebooks, first codebook, worst codebook)
  and the max abs / relative error of the encoder, the worst quantizer, ``z`` and the decoder.
* ``matmul``: the device's achieved matmul peak, an ``[n, n] x [n, n]`` matmul at float32
  ``HIGHEST``, float32 ``DEFAULT`` and bfloat16 (TFLOP/s), and the throughput of the VQ
  nearest-code search (:func:`jaxlatent.quantizers.nearest_code`, l2 ``addmm`` form and cosine,
  default chunks; its distances are float32 ``HIGHEST`` matmuls) as vectors/s, TFLOP/s of its
  ``2 N D K`` matmul work and the fraction of the float32 ``HIGHEST`` peak.
* ``bench_dac``, ``bench_quantizers``, ``bench_train``: those scripts (each framework timed
  in its own processes, `benchmarks.common`) at sizes that fit the time budget; their
  Markdown is included. Their torch workers run on the CPU.

Sections run in `SECTIONS` order (the environment always first: it names the backend and the
default output file). ``--budget`` (seconds; default `FULL_BUDGET_S` in the full mode) bounds
the whole run: a section gets at most its own timeout (`TIMEOUTS`) and what is left of the
budget, and one that does not fit is marked skipped. ``--update`` keeps the sections not run
now from the report already at the output path, so a session limited to a few minutes per
command can fill one report in two commands (``--sections parity matmul``, then
``--sections bench_dac bench_quantizers bench_train --update``); the end of the run prints
that command for the sections that were not ok.

``--tiny`` runs everything at tiny sizes (tiny DAC models of the same rates, 0.25 s of audio,
small matmuls, the benches' ``--smoke`` mode): the structure, not the numbers
(tests/unit/test_accelerator_report.py runs the script with one DAC variant and the sections
environment, matmul and parity; tests/unit/test_bench_{dac,quantizers,train}.py run the bench
sections, each its bench's one smoke run).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):  # run as ``python benchmarks/accelerator_report.py``
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common
from benchmarks.common import markdown_table

MODULE = "benchmarks.accelerator_report"
VARIANTS = ("dac_44khz_8kbps", "dac_44khz_16kbps", "dac_24khz", "dac_16khz")
#: In the order they run: the cheap and the jaxlatent-only ones first.
SECTIONS = ("environment", "matmul", "parity", "bench_dac", "bench_quantizers", "bench_train")
#: Seconds for the whole full run unless --budget says otherwise (a GPU session allows ~10
#: minutes per command); sections that do not fit are marked skipped (rerun them with
#: ``--sections ... --update``).
FULL_BUDGET_S = 480

#: The two precision settings of the report (names of `jaxlatent.precision.PRECISIONS`).
PRECISIONS = ("highest", "default")
#: torch's TF32 switch (cuBLAS and cuDNN ``allow_tf32``) per precision name, on CUDA.
TORCH_TF32 = {"highest": False, "default": True}


def jax_precision(name: str):
    """The `jax.lax.Precision` of a report precision name ("highest", "default")."""
    from jaxlatent.precision import resolve_precision

    return resolve_precision(name)


# -- sizes ---------------------------------------------------------------------------------------
#: Section sizes, full (one H100, about 8 minutes in all) and tiny (CPU smoke test).
FULL = {
    "parity_seconds": 2.0,
    "matmul_n": 8192,
    "matmul_iters": 10,
    # (N vectors, D dims, K codes): bench_quantizers' D=256 shape, a codec-like low D, a big one
    "search_shapes": [(65536, 256, 1024), (65536, 8, 1024), (262144, 256, 16384)],
    "search_iters": 5,
    "bench_dac": ["--seconds", 5, "--rounds", 1, "--iters", 2, "--minutes", "--narrow-minutes"],
    "bench_quantizers": ["--rounds", 1, "--iters", 3],
    "bench_train": ["--rounds", 2, "--iters", 5, "--dac-rounds", 1, "--devices", "1,2,4,8"],
}
#: Full sizes on a CPU backend (``--sections matmul`` on a workstation): the accelerator's
#: matmul and search sizes would take minutes there.
FULL_CPU = {"matmul_n": 2048, "search_shapes": [(65536, 256, 1024), (65536, 8, 1024)]}
TINY = {
    "parity_seconds": 0.25,
    "matmul_n": 256,
    "matmul_iters": 2,
    "search_shapes": [(512, 64, 128), (256, 8, 32)],
    "search_iters": 2,
    # the benches' own smoke runs (2 rounds; bench_train with its scaling worker):
    # tests/unit/test_bench_{dac,quantizers,train}.py run these sections, so that the suite
    # runs each bench's smoke mode once
    "bench_dac": ["--smoke"],
    "bench_quantizers": ["--smoke"],
    "bench_train": ["--smoke", "--models", "vae"],
}
#: Per-section timeouts in seconds (full, tiny): a guard against a hung section; a tiny run
#: on a loaded CI machine may be slow, so its timeouts are generous.
TIMEOUTS = {
    "environment": (120, 300),
    "matmul": (120, 600),
    "parity": (300, 900),
    "bench_dac": (240, 600),
    "bench_quantizers": (180, 600),
    "bench_train": (240, 600),
}


# -- workers (one subprocess each) ---------------------------------------------------------------
def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def worker_environment(args) -> dict:
    """Versions, JAX's devices, torch's device and the GPU as nvidia-smi sees it."""
    import jax

    devices = jax.devices()
    d = devices[0]
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": f"{common.cpu_name()}, {common.cores()} cores available",
        "backend": jax.default_backend(),
        "devices": f"{len(devices)} x {d.device_kind} ({d.platform})",
        "versions": {
            name: _version(name)
            for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "descript-audio-codec")
        },
    }
    plugins = sorted(
        n for n in _distributions() if n.startswith(("jax-cuda", "jax_cuda", "libtpu"))
    )
    info["versions"].update({n: _version(n) for n in plugins})
    try:
        stats = d.memory_stats() or {}
    except Exception:  # not every backend reports memory
        stats = {}
    if "bytes_limit" in stats:
        info["device_memory_gib"] = stats["bytes_limit"] / 2**30
    try:
        import torch

        cuda = torch.cuda.is_available()
        info["torch_device"] = (
            f"cuda: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}"
            if cuda
            else f"cpu ({torch.get_num_threads()} threads; CUDA build: {torch.version.cuda})"
        )
    except ImportError:
        info["torch_device"] = "torch not installed"
    try:
        query = "--query-gpu=name,driver_version,memory.total"
        smi = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = "not available"
    return info


def _distributions() -> list[str]:
    import importlib.metadata

    return [d.metadata["Name"].lower() for d in importlib.metadata.distributions()]


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_parity(args) -> dict:
    """One DAC variant: its release checkpoint made by the reference code, then the parity
    report at every precision of `PRECISIONS`."""
    torch = common.torch_threads(args.threads)
    from benchmarks.bench_dac import variant_config
    from converters.dac_parity import parity_report
    from jaxlatent.apps.codec_demo import make_release_checkpoint

    path = os.path.join(args.workdir, f"{args.variant}.pth")
    make_release_checkpoint(path, variant_config(args.variant, args.tiny), seed=0)
    device = _torch_device()
    out = {"variant": args.variant, "torch_device": device, "precisions": {}}
    for name in PRECISIONS:
        tf32 = TORCH_TF32[name] if device == "cuda" else False
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            report = parity_report(
                path, seconds=args.seconds, precision=jax_precision(name), torch_device=device
            )
        except Exception as e:  # recorded; the other precision still runs
            out["precisions"][name] = {"error": f"{type(e).__name__}: {e}"[-2000:]}
            continue
        out["precisions"][name] = {
            "torch_flags": f"allow_tf32={tf32}" if device == "cuda" else "float32",
            "seconds": report.seconds,
            "sample_rate": report.sample_rate,
            "code_agreement": report.code_agreement,
            "stages": [[s.stage, s.max_abs, s.max_rel, s.code_agreement] for s in report.stages],
            "jax_compile_s": report.jax_compile_s,
            "table": "\n".join(report.format().splitlines()[3:]),  # without the paths
        }
        print(f"<!-- parity {args.variant} {name} done -->", file=sys.stderr, flush=True)
    return out


def worker_matmul(args) -> dict:
    """Achieved matmul TFLOP/s per precision and the VQ search's throughput."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxlatent.quantizers import default_chunks, nearest_code

    n, it = args.matmul_n, {"warmup": 2, "iters": args.iters}
    rng = np.random.default_rng(0)
    a32 = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b32 = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    settings = {
        "float32 highest": (jnp.float32, jax_precision("highest")),
        "float32 default": (jnp.float32, jax_precision("default")),
        "bfloat16 default": (jnp.bfloat16, jax_precision("default")),
    }
    peaks = {}
    for label, (dtype, precision) in settings.items():
        fn = jax.jit(lambda a, b, p=precision: jnp.dot(a, b, precision=p))
        t = common.time_jax(fn, a32.astype(dtype), b32.astype(dtype), **it)
        peaks[label] = {"tflops": 2 * n**3 / t.median_s / 1e12, "median_s": t.median_s}

    @jax.jit
    def l2(x, c):
        return nearest_code(x, c, form="addmm")

    @jax.jit
    def cosine(x, c):
        return nearest_code(x, c, metric="cosine", form="dac")

    searches = []
    for shape in args.search_shapes:
        nv, d, k = shape
        x = jnp.asarray(rng.standard_normal((nv, d), dtype=np.float32))
        c = jnp.asarray(rng.standard_normal((k, d), dtype=np.float32))
        for form, fn in (("l2 (addmm)", l2), ("cosine (dac)", cosine)):
            t = common.time_jax(fn, x, c, warmup=1, iters=args.search_iters)
            searches.append(
                {
                    "shape": list(shape),
                    "form": form,
                    "median_s": t.median_s,
                    "compile_s": t.compile_s,
                    "tflops": 2 * nv * d * k / t.median_s / 1e12,
                }
            )
    return {"n": n, "peaks": peaks, "searches": searches, "chunks": list(default_chunks())}


WORKERS = {"environment": worker_environment, "parity": worker_parity, "matmul": worker_matmul}


# -- running a section's subprocess --------------------------------------------------------------
class SectionFailed(Exception):
    """A section's subprocess failed or timed out; the message ends with its last lines."""


def run_process(cmd: list[str], timeout: float, label: str, env: dict | None = None) -> list[str]:
    """Run `cmd` from the repository root in its own process group, echoing its output to
    stderr (prefixed with `label`) as it comes; returns its output lines.

    Raises:
      SectionFailed: on a non-zero exit, or after `timeout` seconds (the whole process group,
        the benches' workers included, is killed), with the last output lines.
    """
    proc = subprocess.Popen(
        cmd,
        cwd=common.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def pump():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print(f"  [{label}] {line.rstrip()}", file=sys.stderr, flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SectionFailed(f"timed out after {timeout:.0f} s\n" + _tail(lines)) from None
    finally:
        try:  # whatever is left of the group (all of it after a timeout)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        reader.join(30)
        proc.stdout.close()
    if proc.returncode != 0:
        raise SectionFailed(f"exit status {proc.returncode}\n" + _tail(lines))
    return lines


def _tail(lines: list[str], n: int = 30) -> str:
    return "\n".join(collections.deque(lines, maxlen=n))


def run_json_worker(role: str, wargs: list, timeout: float, env: dict | None = None) -> dict:
    """``python -m benchmarks.accelerator_report --worker <role> <wargs>``: its JSON result."""
    cmd = [sys.executable, "-m", MODULE, "--worker", role, *map(str, wargs)]
    lines = run_process(cmd, timeout, role, env)
    results = [line for line in lines if line.startswith("{")]
    if not results:
        raise SectionFailed("printed no JSON result\n" + _tail(lines))
    return json.loads(results[-1])


def _parity_env() -> dict:
    # jax and torch share the parity process: no preallocation of most of the device's memory
    return dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")


# -- sections (the parent) -----------------------------------------------------------------------
def section_environment(args, sizes, timeout) -> tuple[str, dict]:
    info = run_json_worker("environment", [], timeout)
    rows = [
        ["machine", info["platform"]],
        ["CPU", info["cpu"]],
        ["python", info["python"]],
        ["JAX backend", info["backend"]],
        ["JAX devices", info["devices"]],
    ]
    if "device_memory_gib" in info:
        rows.append(["device memory (JAX's limit)", f"{info['device_memory_gib']:.1f} GiB"])
    rows += [["nvidia-smi", info["nvidia_smi"] or "no GPU"], ["torch device", info["torch_device"]]]
    rows += [[name, version] for name, version in info["versions"].items()]
    return markdown_table(["", ""], rows), info


def _fmt_err(abs_: float, rel: float) -> str:
    return f"{abs_:.2e} / {rel:.2e}"


def parity_rows(result: dict) -> tuple[list[list[str]], list[str], list[str]]:
    """A variant's parity worker result: one table row per precision, the full per-stage
    listing of each, and the precisions that failed."""
    rows, details, failures = [], [], []
    for name, r in result["precisions"].items():
        if "error" in r:
            failures.append(f"{result['variant']} {name}: **FAILED**: {r['error']}")
            continue
        label = f"{result['variant']}, {name}, {r['seconds']:.2f} s at {r['sample_rate']} Hz"
        details.append(f"{label}:\n\n```\n{r['table']}\n```")
        stages = {s[0]: s for s in r["stages"]}
        quantizers = [s for s in r["stages"] if s[0].startswith("quantizer")]
        worst_q = max(quantizers, key=lambda s: s[1])
        worst_codes = min(quantizers, key=lambda s: s[3])
        rows.append(
            [
                result["variant"],
                name,
                f"{result['torch_device']} ({r['torch_flags']})",
                f"{r['seconds']:.2f} s",
                f"{r['code_agreement']:.2%}",
                f"{quantizers[0][3]:.2%}",
                f"{worst_codes[3]:.2%} ({worst_codes[0].split()[-1]})",
                _fmt_err(*stages["encoder"][1:3]),
                _fmt_err(worst_q[1], worst_q[2]) + f" ({worst_q[0].split()[-1]})",
                _fmt_err(*stages["z"][1:3]),
                _fmt_err(*stages["decoder"][1:3]),
                f"{r['jax_compile_s']:.1f}",
            ]
        )
    return rows, details, failures


PARITY_HEADER = [
    "variant",
    "precision",
    "torch",
    "audio",
    "codes equal (all)",
    "first codebook",
    "worst codebook (index)",
    "encoder max abs / rel err",
    "worst quantizer (index)",
    "z",
    "decoder",
    "jax compile s",
]


def section_parity(args, sizes, timeout) -> tuple[str, dict]:
    rows, details, failures, deadline = [], [], [], time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="accelerator_report-") as work:
        for variant in args.variants:
            left = deadline - time.monotonic()
            if left <= 0:
                failures.append(f"{variant}: not run (the section's {timeout:.0f} s were spent)")
                continue
            wargs = ["--variant", variant, "--workdir", work, "--seconds", sizes["parity_seconds"]]
            wargs += ["--tiny"] if args.tiny else []
            try:
                result = run_json_worker("parity", wargs, left, _parity_env())
            except SectionFailed as e:
                tail = str(e).replace("```", "'''")
                failures.append(f"{variant}: **FAILED**:\n\n  ```\n{tail}\n  ```")
                continue
            r, d, f = parity_rows(result)
            rows, details, failures = rows + r, details + d, failures + f
    text = [
        "Each variant's release checkpoint is made by the reference code with random weights "
        "(torch seed 0); jaxlatent converts it with the production converter and both code "
        "the bundled speech (resampled to the model rate), stage by stage "
        "(`converters.dac_parity.parity_report`, as `jaxlatent parity dac`). Precision "
        "`highest`: jaxlatent's convolutions at `jax.lax.Precision.HIGHEST`, torch TF32 off; "
        "`default`: `Precision.DEFAULT`, torch TF32 on (CUDA; on the CPU torch is float32 "
        "both times). Errors: max |jax - torch| / that over max |torch|; each quantizer runs "
        "on its own side's residual, so differences propagate as they would.",
        "",
        markdown_table(PARITY_HEADER, rows) if rows else "(no variant finished)",
    ]
    if failures:
        text += ["", *(f"- {f}" for f in failures)]
    if details:
        text += ["", "<details><summary>Every stage (parity_report's table)</summary>", ""]
        text += ["\n\n".join(details), "", "</details>"]
    if failures and not rows:
        raise SectionFailed("\n".join(failures))
    return "\n".join(text), {}


def section_matmul(args, sizes, timeout) -> tuple[str, dict]:
    wargs = ["--matmul-n", sizes["matmul_n"], "--iters", sizes["matmul_iters"]]
    wargs += ["--search-shapes", ",".join("x".join(map(str, s)) for s in sizes["search_shapes"])]
    wargs += ["--search-iters", sizes["search_iters"]]
    r = run_json_worker("matmul", wargs, timeout)
    n, peaks = r["n"], r["peaks"]
    peak = peaks["float32 highest"]["tflops"]
    peak_rows = [
        [label, f"{p['median_s'] * 1e3:.2f}", f"{p['tflops']:.3g}"] for label, p in peaks.items()
    ]
    search_rows = [
        [
            "x".join(map(str, s["shape"])),
            s["form"],
            f"{s['median_s'] * 1e3:.2f}",
            f"{s['shape'][0] / s['median_s'] / 1e6:.3g}",
            f"{s['tflops']:.3g}",
            f"{100 * s['tflops'] / peak:.3g}%",
            f"{s['compile_s']:.1f}",
        ]
        for s in r["searches"]
    ]
    text = [
        f"Matmul `[{n}, {n}] x [{n}, {n}]` (jit, median of {sizes['matmul_iters']} after 2 "
        "warm-up calls), achieved TFLOP/s = 2 n³ / time:",
        "",
        markdown_table(["dtype, precision", "ms", "TFLOP/s"], peak_rows),
        "",
        f"VQ nearest-code search (`jaxlatent.quantizers.nearest_code`, exact argmin, default "
        f"chunks {tuple(r['chunks'])}; its distances are float32 `HIGHEST` matmuls, so its "
        f"reference is the float32 highest peak, {peak:.3g} TFLOP/s). TFLOP/s counts the "
        "2·N·D·K multiply-adds of the distances (the argmin's N·K compares are extra work):",
        "",
        markdown_table(
            [
                "NxDxK",
                "search",
                "ms",
                "M vectors/s",
                "TFLOP/s",
                "of the f32 highest peak",
                "compile s",
            ],
            search_rows,
        ),
    ]
    return "\n".join(text), {}


def _bench_section(script: str):
    def section(args, sizes, timeout) -> tuple[str, dict]:
        with tempfile.TemporaryDirectory(prefix="accelerator_report-") as work:
            out = os.path.join(work, f"{script}.md")
            cmd = [sys.executable, "-m", f"benchmarks.{script}", *map(str, sizes[script])]
            cmd += ["--out", out]
            run_process(cmd, timeout, script)
            with open(out) as f:
                text = f.read().strip()
        flags = " ".join(map(str, sizes[script]))
        text = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)
        note = f"`python -m benchmarks.{script} {flags}`: its torch workers run on the CPU"
        if sizes.get("backend", "cpu") != "cpu":
            note += (
                f", its jax workers on the {sizes['backend']} backend: the speed-ups compare "
                "devices as well as frameworks"
            )
        return f"{note}.\n\n{text}", {}

    return section


SECTION_FNS = {
    "environment": section_environment,
    "parity": section_parity,
    "matmul": section_matmul,
    "bench_dac": _bench_section("bench_dac"),
    "bench_quantizers": _bench_section("bench_quantizers"),
    "bench_train": _bench_section("bench_train"),
}
TITLES = {
    "environment": "Environment",
    "parity": "DAC parity against the torch reference",
    "matmul": "Matmul peak and VQ search throughput",
    "bench_dac": "bench_dac: DAC encode + decode",
    "bench_quantizers": "bench_quantizers: nearest-code search",
    "bench_train": "bench_train: training step",
}


def render(args, backend: str, parts: dict[str, str], started: str, kept=()) -> str:
    """The report: a header, then every section run or kept, in `SECTIONS` order."""
    mode = "tiny (smoke-test sizes: the numbers only show that it runs)" if args.tiny else "full"
    order = [s for s in SECTIONS if s in parts or s in args.sections]
    lines = [
        f"# Accelerator report: {backend}",
        "",
        f"`python benchmarks/accelerator_report.py{' --tiny' if args.tiny else ''}`, mode "
        f"{mode}; started {started}; {common.load()} at the last update.",
    ]
    if kept:
        lines += ["", f"Kept from the earlier report (`--update`): {', '.join(kept)}."]
    lines += ["", "Sections: " + ", ".join(f"{s} ({_state(parts.get(s))})" for s in order) + "."]
    for s in order:
        lines += ["", f"## {TITLES[s]}", "", parts.get(s, "Not run yet (the run stopped before).")]
    return "\n".join(lines) + "\n"


def _state(part: str | None) -> str:
    if part is None:
        return "not run"
    if part.startswith("**FAILED**"):
        return "failed"
    if part.startswith("**SKIPPED**"):
        return "skipped"
    return "partly failed" if "**FAILED**" in part else "ok"


def read_sections(path: str) -> dict[str, str]:
    """The sections of an earlier report at `path` (none if there is no file): name -> text."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        text = f.read()
    by_title = {title: name for name, title in TITLES.items()}
    parts = {}
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = chunk.partition("\n")
        if title.strip() in by_title:
            parts[by_title[title.strip()]] = body.strip()
    return parts


def default_out(backend: str) -> str:
    kind = {"cuda": "gpu", "rocm": "gpu"}.get(backend, backend)
    return os.path.join(common.ROOT, "benchmarks", "results", f"{kind}-report.md")


def run_section(args, section: str, sizes: dict, timeout: float) -> tuple[str, dict]:
    """One section's text (and its info); a failure or a timeout becomes the text."""
    s0 = time.monotonic()
    if timeout <= 0:
        return f"**SKIPPED**: the --budget of {args.budget:g} s was spent.", {}
    try:
        text, info = SECTION_FNS[section](args, sizes, timeout)
        return f"{text}\n\n_{time.monotonic() - s0:.0f} s._", info
    except SectionFailed as e:
        tail = str(e).replace("```", "'''")
        return f"**FAILED** ({time.monotonic() - s0:.0f} s):\n\n```\n{tail}\n```", {}
    except Exception as e:  # a bug of the parent's formatting must not lose the report
        return f"**FAILED** (report error): `{type(e).__name__}: {e}`", {}


def run(args) -> str:
    """Run the chosen sections in order, rewriting the report after each; returns its path."""
    from jaxlatent.atomic import atomic_write

    sizes = TINY if args.tiny else FULL
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t0 = time.monotonic()
    parts: dict[str, str] = {}
    kept: list[str] = []
    backend, out = "unknown", args.out
    for section in [s for s in SECTIONS if s in args.sections]:
        timeout = TIMEOUTS[section][1 if args.tiny else 0]
        if args.budget is not None:
            timeout = min(timeout, args.budget - (time.monotonic() - t0))
        print(f"== {section}: starting ({common.load()})", file=sys.stderr, flush=True)
        s0 = time.monotonic()
        parts[section], info = run_section(args, section, sizes, timeout)
        backend = info.get("backend", backend)
        if section == "environment":  # the first section: it names the backend
            if backend == "cpu" and not args.tiny:
                sizes = dict(sizes, **FULL_CPU)
            sizes = dict(sizes, backend=backend)
            out = out or default_out(backend)
            if args.update:
                earlier = read_sections(out)
                kept = [s for s in SECTIONS if s in earlier and s not in args.sections]
                parts.update({s: earlier[s] for s in kept})
        atomic_write(out, render(args, backend, parts, started, kept))
        state = _state(parts[section])
        took = time.monotonic() - s0
        print(f"== {section}: {state} in {took:.0f} s -> {out}", file=sys.stderr, flush=True)
    redo = [s for s in args.sections if _state(parts.get(s)) != "ok"]
    if redo:
        print(
            f"== not ok: {', '.join(redo)}; to redo them: python benchmarks/"
            f"accelerator_report.py --sections {' '.join(redo)} --update --out {out}",
            file=sys.stderr,
        )
    return out


def _shapes(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke test)")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument(
        "--budget",
        type=float,
        help=f"seconds for the whole run (default: {FULL_BUDGET_S} full, none with --tiny)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the sections not run now from the report already at the output path",
    )
    p.add_argument("--out", help="report file (default: benchmarks/results/<backend>-report.md)")
    # worker processes only
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=common.cores(), help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--matmul-n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--iters", type=int, help=argparse.SUPPRESS)
    p.add_argument("--search-shapes", type=_shapes, help=argparse.SUPPRESS)
    p.add_argument("--search-iters", type=int, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if common.serve_worker(args, WORKERS):
        return
    if args.budget is not None and not args.budget > 0:
        parser().error(f"--budget must be positive, got {args.budget}")
    if args.budget is None and not args.tiny:
        args.budget = FULL_BUDGET_S
    # the environment always comes first: it names the backend (and the default --out)
    args.sections = [
        "environment",
        *(s for s in dict.fromkeys(args.sections) if s != "environment"),
    ]
    print(run(args))


if __name__ == "__main__":
    main()
