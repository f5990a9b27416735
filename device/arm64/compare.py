"""Compare dumps of dump_outputs.py between x86-64 (reference) and emulated arm64.

Preprocessed input tensors must be identical everywhere. Then one question decides each artifact and
kernel set: is its arithmetic defined the same on both architectures, or does each architecture's
code choose its own rounding?

  defined   float artifacts (float32, float16) on every kernel set and runtime: IEEE arithmetic whose
            summation order alone differs (NEON vs AVX/FMA), so float outputs within --tol:
            |arm64 - x86| <= tol * (1 + |x86|), default 1e-5 (numpy.isclose, rtol = atol = tol).
            And int8 artifacts on the TFLite reference kernels (`--kernels reference`): portable
            integer code with one rounding rule, so integer outputs identical (or within --int-lsb
            steps, default 0) and a float head's outputs within --tol.
  rounding  integer arithmetic whose rounding is the implementation's choice per architecture (ROUNDING):
            TFLite int8 and int8_full on the fast kernels (xnnpack, the default, and builtin: NEON and
            AVX requantize differently), onnxruntime's quantized kernels (ONNX int8, MLAS per
            architecture), and dynamic-range on every kernel set (activations are quantized at run
            time from float statistics, so one float rounding can move an integer). A one-step
            difference travels through every later layer, so any bound in steps or in float error
            would depend on the model's depth (resnet8_edge's fully integer model measured 3 steps on
            builtin kernels where seed002_m1 measured 1). The verdict is instead the one the reports
            make: the same top-1 class on every image. An output whose top is tied (equal highest
            values: int8 logits one step apart collapse; export reports count such ties) has no single
            class, so two outputs match when their sets of top classes share a class. The largest
            difference is reported.
A runtime/format pair the runner itself warns about (Classifier.caveat, recorded by dump_outputs.py:
tflite-runtime with dynamic-range models) is reported as KNOWN with its measured difference instead of
failing; it still fails if it cannot load or if the two machines disagree on the caveat.
`edgecifar run --json` results (default kernels) follow the raw rule of their artifact: defined
arithmetic needs identical top-k classes with confidences equal up to a printed last-digit rounding
step; rounding arithmetic needs the same top-1 (ties as above), and the confidence difference is
reported. Prints one line per artifact and PASS or FAIL; exit code 0 only on PASS.

    python compare.py REF_DIR TEST_DIR [--label cortex-a72] [--tol 1e-5] [--int-lsb 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


EXACT_KERNELS = (None, "reference")  # None: onnxruntime (one kernel set); "reference": TFLite's portable kernels
INT8_FORMATS = ("tflite_int8", "tflite_int8_full", "onnx_int8")


def rounding_rule(fmt: str, kernels) -> bool:
    """True where the architecture's own code rounds the integer arithmetic (the `rounding` rule above)."""
    if fmt == "tflite_dynamic":
        return True
    if fmt == "onnx_int8":
        return True
    return fmt in INT8_FORMATS and kernels not in EXACT_KERNELS


def top_sets_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: do the two outputs' sets of top classes (every class equal to the row's maximum) intersect?"""
    return ((a == a.max(1, keepdims=True)) & (b == b.max(1, keepdims=True))).any(1)


def compare_dump(ref: Path, test: Path, tol: float, int_lsb: int = 0, rounding: bool = False) -> tuple[bool, str]:
    a, b = np.load(ref), np.load(test)
    if list(a["names"]) != list(b["names"]):
        return False, "different image lists"
    if a["input"].dtype != b["input"].dtype or not np.array_equal(a["input"], b["input"]):
        return False, f"preprocessed inputs differ ({a['input'].dtype} vs {b['input'].dtype})"
    ra, rb = a["raw"], b["raw"]
    if ra.dtype != rb.dtype or ra.shape != rb.shape:
        return False, f"output {ra.dtype}{ra.shape} vs {rb.dtype}{rb.shape}"
    n = len(ra)
    top = int(top_sets_share(ra, rb).sum())  # raw outputs: ties are exact there (probabilities may round them apart)
    ties = int(((ra == ra.max(1, keepdims=True)).sum(1) > 1).sum())
    if ra.dtype.kind in "iu":
        diff = int((ra != rb).sum())
        lsb = int(np.abs(ra.astype(np.int64) - rb.astype(np.int64)).max())
        ok = top == n if rounding else lsb <= int_lsb
        images = int((ra != rb).any(axis=1).sum())
        what = (f"{ra.dtype} outputs: identical" if diff == 0 else
                f"{ra.dtype} outputs: {diff} of {ra.size} values differ (on {images} images), by at most {lsb} "
                f"quantization step{'s' if lsb > 1 else ''}" + ("" if rounding else f" (allowed: {int_lsb})"))
    else:
        # |arm - x86| <= tol + tol * |x86| (numpy.isclose with rtol = atol = tol): float32 sums run in a
        # different order on NEON than on AVX2/FMA, and that error scales with the value.
        a64, b64 = ra.astype(np.float64), rb.astype(np.float64)
        diff = np.abs(a64 - b64)
        bound = tol + tol * np.abs(a64)
        err, worst = float(diff.max()), float((diff / bound).max())
        ok = top == n if rounding else worst <= 1.0
        what = (f"{ra.dtype} outputs: max |diff| {err:.2e}" if rounding else
                f"{ra.dtype} outputs: max |diff| {err:.2e}, {worst:.2f} of the allowed "
                f"{tol:.0e}*(1+|x|) ({int((diff > bound).sum())} values over)")
    if rounding:
        what += "; architecture-rounded integer arithmetic: top-1 decides"
    tie_note = f" ({ties} tied on x86-64, matched by any tied class)" if ties else ""
    return ok, f"{what}; inputs identical; top-1 same on {top}/{n}{tie_note}"


def compare_run_json(ref: Path, test: Path, tol: float, top1_only: bool = False) -> tuple[bool, str]:
    """`edgecifar run --json` output: one JSON object per frame (JSON lines), timings ignored.

    The runner prints confidences rounded to a few decimals, so two values closer than `tol`
    can still print one last-digit step apart when they straddle a rounding boundary; such
    flips are counted and allowed, anything larger fails. The exact comparison is the raw one.
    `top1_only` (the rounding rule, as compare_dump): the top-1 class must match (a tied top
    matches any of its classes); the other classes and the confidences are reported, not judged.
    """
    ra = [json.loads(l) for l in ref.read_text().splitlines() if l.strip()]
    rb = [json.loads(l) for l in test.read_text().splitlines() if l.strip()]
    if len(ra) != len(rb) or not ra:
        return False, f"{len(ra)} vs {len(rb)} results"
    if top1_only:
        worst, moved = 0.0, 0
        for x, y in zip(ra, rb):
            tx, ty = x.get("top", []), y.get("top", [])
            if x.get("file") != y.get("file") or not tx or not ty or not (_top_set(tx) & _top_set(ty)):
                return False, f"frame {x.get('frame')} ({x.get('file')}): top-1 {tx[:1]} vs {ty[:1]}"
            worst = max(worst, abs(float(tx[0]["confidence"]) - float(ty[0]["confidence"])))
            moved += [t["index"] for t in tx] != [t["index"] for t in ty]
        return True, (f"{len(ra)} frames, top-1 identical (architecture-rounded integer arithmetic: top-1 decides); "
                      f"top-1 confidence max |diff| {worst:.4f}; lower top-k order differs on {moved}")
    flips = values = 0
    for x, y in zip(ra, rb):
        tx, ty = x.get("top", []), y.get("top", [])
        if x.get("file") != y.get("file") or [t["index"] for t in tx] != [t["index"] for t in ty] or not tx:
            return False, f"frame {x.get('frame')} ({x.get('file')}): top-k {tx} vs {ty}"
        for p, q in zip(tx, ty):
            a, b = str(p["confidence"]), str(q["confidence"])
            values += 1
            if a == b:
                continue
            step = 10.0 ** -max(len(a.partition(".")[2]), len(b.partition(".")[2]))
            if step > 1e-3 or abs(float(a) - float(b)) > step * 1.001:
                return False, f"frame {x.get('frame')} ({x.get('file')}): confidence {a} vs {b}"
            flips += 1
    flip_note = f" ({flips} differ by one last-digit rounding step)" if flips else ""
    return True, f"{len(ra)} frames, top-k classes identical, {values - flips}/{values} printed confidences identical{flip_note}"


def _top_set(top: list[dict]) -> set[int]:
    """The classes sharing the highest printed confidence (one unless the output is tied)."""
    best = float(top[0]["confidence"])
    return {int(t["index"]) for t in top if float(t["confidence"]) == best}


def _reason(error: str) -> str:
    """A load error without the artifact's path (which differs between host and chroot)."""
    return error.split(": ", 1)[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("--label", default="arm64")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--int-lsb", type=int, default=0,
                    help="int8 on the reference kernels: integer outputs may differ by this many steps (default 0: identical).")
    args = ap.parse_args()
    ref_sum = json.loads((args.ref / "summary.json").read_text())
    test_sum = json.loads((args.test / "summary.json").read_text())
    print(f"{args.label}: {test_sum['machine']} [{test_sum['cpu_features']}] python {test_sum['python']} "
          f"{test_sum['libc']} numpy {test_sum['numpy']} opencv {test_sum['opencv']}  vs  {ref_sum['machine']} "
          f"python {ref_sum['python']} numpy {ref_sum['numpy']} opencv {ref_sum['opencv']}")
    all_ok, checked, refused, known = True, 0, 0, {}
    for key in sorted(set(ref_sum["runs"]) | set(test_sum["runs"])):
        r, t = ref_sum["runs"].get(key), test_sum["runs"].get(key)
        if r is None or t is None:
            ok, what = False, f"only on {'arm64' if r is None else 'x86-64'}"
        elif "error" in r and _reason(r["error"]) == _reason(t.get("error", "")):
            # An artifact this runtime cannot open anywhere: the architectures agree, but say it loudly.
            ok, what = True, f"REFUSED identically on both ({_reason(r['error'])})"
            refused += 1
        elif "error" in r or "error" in t:
            ok, what = False, f"cannot load: x86-64: {r.get('error', 'ok')} | arm64: {t.get('error', 'ok')}"
        else:
            rounding = rounding_rule(t.get("format"), t.get("kernels"))
            ok, what = compare_dump(args.ref / f"{key}.npz", args.test / f"{key}.npz", args.tol, args.int_lsb, rounding)
            what = f"{t['runtime']} vs {r['runtime']}, {'rounding' if rounding else 'defined'} rule: {what}"
        status = "ok  " if ok else "FAIL"
        if not ok and t.get("caveat") and t.get("caveat") == r.get("caveat"):
            known[key], ok, status = t["caveat"], True, "KNOWN"
        checked += 1
        all_ok &= ok
        print(f"  {status} {key}: {what}")
    for ref_json in sorted(args.ref.glob("*.run.jsonl")):
        test_json = args.test / ref_json.name
        artifact = ref_json.name[: -len(".run.jsonl")]
        if not test_json.exists():
            ok, what = False, "missing on arm64"
        else:
            # `edgecifar run` uses the default kernels: xnnpack for TFLite.
            rounding = any(k.startswith(f"{artifact}__") and rounding_rule(v.get("format"), "xnnpack")
                           for k, v in ref_sum["runs"].items())
            ok, what = compare_run_json(ref_json, test_json, args.tol, top1_only=rounding)
        checked += 1
        all_ok &= ok
        print(f"  {'ok  ' if ok else 'FAIL'} edgecifar run --json {artifact}: {what}")
    all_ok &= checked > 0
    note = f", {refused} artifact(s) refused by this runtime on both" if refused else ""
    if known:
        note += f", {len(known)} KNOWN difference(s) the runner warns about"
        for caveat in sorted(set(known.values())):
            print(f"  KNOWN: {caveat}")
    print(f"{args.label}: {'PASS' if all_ok else 'FAIL'} ({checked} comparisons{note})")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
