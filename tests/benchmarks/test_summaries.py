"""The benchmark summaries: averaging over seeds, ratios, site quality and the scale projection."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from benchmarks.quality import plot_quality, site_quality, write_quality_markdown
from benchmarks.run import SITE_ERRORS_VERSION, memory_by_phase
from benchmarks.run import main as run_main
from benchmarks.scale import main as scale_main
from benchmarks.scale import project
from benchmarks.stage2_memory import merge_rows
from benchmarks.stage2_memory import write_markdown as write_stage2_memory
from benchmarks.tables import summarize, write_markdown
from benchmarks.uniformity import reference_error
from ruquant.utils.memory import peak_phase


def _record(method: str, seed: int, perplexity: float, **extra: object) -> dict[str, object]:
    return {
        "protocol": "quick-v1",
        "method": method,
        "w_bits": 16 if method == "fp" else 4,
        "a_bits": 16 if method == "fp" else 4,
        "stage2_epochs": 0,
        "seed": seed,
        "perplexity": perplexity,
        "quantize_seconds": 0.0 if method == "fp" else 300.0,
        "fp_forward_seconds": 150.0,
        "peak_memory_bytes": 2**30,
        **extra,
    }


def test_summary_averages_seeds_and_divides_by_float() -> None:
    records = [_record("fp", 444, 20.0), _record("ruquant", 444, 30.0), _record("ruquant", 445, 34.0)]
    rows = {row["method"]: row for row in summarize(records)}
    assert rows["ruquant"]["seeds"] == 2
    assert rows["ruquant"]["perplexity"] == pytest.approx(32.0)
    assert rows["ruquant"]["perplexity_std"] == pytest.approx(math.sqrt(8.0))
    assert rows["ruquant"]["ratio_to_fp"] == pytest.approx(1.6)
    assert rows["ruquant"]["cost_ratio"] == pytest.approx(2.0)
    assert rows["fp"]["ratio_to_fp"] == pytest.approx(1.0)
    assert rows["fp"]["cost_ratio"] is None


def test_cost_ratio_uses_each_record_float_time() -> None:
    # Two boots of different speed: each quantization time divides by its own float forward time.
    fast = _record("ruquant", 444, 30.0)
    slow = {**_record("ruquant", 445, 30.0), "quantize_seconds": 600.0, "fp_forward_seconds": 240.0}
    (row,) = summarize([fast, slow])
    assert row["cost_ratio"] == pytest.approx((2.0 + 2.5) / 2)


def test_markdown_lists_float_first(tmp_path) -> None:
    records = [_record("ruquant", 444, 30.0), _record("rtn", 444, 3000.0), _record("fp", 444, 20.0)]
    path = tmp_path / "table.md"
    write_markdown(records, path)
    body = path.read_text().splitlines()[2:]
    assert [line.split("|")[2].strip() for line in body] == ["fp", "rtn", "ruquant"]
    assert "30.00" in body[2]
    assert "1.500" in body[2]


def test_presets_sort_by_width_before_ablations() -> None:
    widths = [(16, 6), (8, 8), (6, 16), (4, 4), (6, 6)]
    records = [_record("ruquant", 444, 30.0, w_bits=w, a_bits=a) for w, a in widths]
    records.append(_record("fp", 444, 20.0))
    assert [row["bits"] for row in summarize(records)] == ["float", "W4A4", "W6A6", "W8A8", "W6A16", "W16A6"]


def test_site_quality_gap_closed(tmp_path) -> None:
    errors = {"attn-in": {"act_error_before": 0.1, "act_error_after": 0.01}}
    rows = site_quality([_record("ruquant", 444, 30.0, site_errors=errors)], widths={"attn-in": 576})
    (row,) = rows
    floor = reference_error(576, 4, 1.0, kind="uniform")
    assert row["uniform_floor"] == pytest.approx(floor)
    assert row["gap_closed"] == pytest.approx((0.1 - 0.01) / (0.1 - floor))
    assert row["after_over_floor"] == pytest.approx(0.01 / floor)
    write_quality_markdown(rows, tmp_path / "quality.md")
    assert "| W4A4 | ruquant | attn-in |" in (tmp_path / "quality.md").read_text()
    plot_quality(rows, tmp_path / "quality.png")
    assert (tmp_path / "quality.png").read_bytes()[:4] == b"\x89PNG"


def test_site_quality_weight_errors_optional(tmp_path) -> None:
    old = {"attn-in": {"act_error_before": 0.1, "act_error_after": 0.01}}
    new = {"attn-in": {**old["attn-in"], "weight_error_before": 0.004, "weight_error_after": 0.002}}
    records = [_record("ruquant", 444, 30.0, site_errors=old), _record("ruquant", 445, 31.0, site_errors=new)]
    (row,) = site_quality(records, widths={"attn-in": 576})
    assert row["records"] == 2
    assert row["weight_error_before"] == pytest.approx(0.004)
    assert row["weight_error_after"] == pytest.approx(0.002)
    (without,) = site_quality(records[:1], widths={"attn-in": 576})
    assert without["weight_error_after"] is None
    write_quality_markdown([row, without], tmp_path / "quality.md")
    lines = (tmp_path / "quality.md").read_text().splitlines()
    assert lines[2].endswith("| 4.00e-03 | 2.00e-03 | before fix |")
    assert lines[3].endswith("|  |  | before fix |")


def test_site_quality_prefers_current_site_errors(tmp_path) -> None:
    # A version 1 record measured ruquant's error after the transform without its folded smoothing.
    # A current record of the same group replaces it, whichever file it came from.
    stale = {"attn-in": {"act_error_before": 0.1, "act_error_after": 0.05}}
    fixed = {"attn-in": {"act_error_before": 0.1, "act_error_after": 0.01}}
    records = [
        _record("ruquant", 444, 30.0, site_errors=stale),
        _record("ruquant", 445, 31.0, site_errors=stale),
        _record("ruquant", 444, None, site_errors=fixed, site_errors_version=SITE_ERRORS_VERSION),
        _record("hadamard", 444, 40.0, site_errors=stale),
    ]
    rows = {row["method"]: row for row in site_quality(records, widths={"attn-in": 576})}
    assert rows["ruquant"]["records"] == 1
    assert rows["ruquant"]["error_after"] == pytest.approx(0.01)
    assert rows["ruquant"]["current"]
    # Hadamard has no smoothing step, so its version 1 errors were right.
    assert rows["hadamard"]["current"]
    (stale_row,) = site_quality(records[:1], widths={"attn-in": 576})
    assert not stale_row["current"]
    write_quality_markdown(list(rows.values()), tmp_path / "quality.md")
    assert all(line.endswith("| current |") for line in (tmp_path / "quality.md").read_text().splitlines()[2:])


def test_uniform_floor_below_gaussian_reference() -> None:
    # The Lloyd-Max argument: evenly spread tokens are the best case for a min-max uniform grid.
    uniform = reference_error(1024, 4, 1.0, kind="uniform")
    gaussian = reference_error(1024, 4, 0.9, kind="gaussian")
    assert uniform < gaussian / 2
    # Step 2/15 of the range [-1, 1]: error (step^2 / 12) over power 1/3.
    assert uniform == pytest.approx((2 / 15) ** 2 / 12 * 3, rel=0.05)


def test_scale_projection_separates_fixed_and_per_window_cost() -> None:
    def measurement(windows: int) -> dict[str, object]:
        timings = {"calibration_forward": 5.0 + 10.0 * windows, "transform_search": 30.0, "invariance_check": 20.0}
        return {"shape": "llama-2-7b", "windows": windows, "timings": timings}

    projection = project([measurement(1), measurement(3)], calibration_windows=128)
    assert projection["per_window_seconds"] == pytest.approx(10.0)
    assert projection["fixed_seconds_per_layer"] == pytest.approx(55.0)
    assert projection["projected_model_seconds"] == pytest.approx(32 * (55.0 + 1280.0))
    json.dumps(projection)


def test_summary_memory_goal_columns() -> None:
    memory = {
        "quantize_peak_memory_bytes": 1500 * 2**20,
        "baseline_memory_bytes": 500 * 2**20,
        "model_bytes": 400 * 2**20,
        "layer_activation_bytes": 100 * 2**20,
    }
    rows = {row["method"]: row for row in summarize([_record("fp", 444, 20.0), _record("ruquant", 444, 30.0, **memory)])}
    assert rows["ruquant"]["quantize_memory_mib"] == pytest.approx(1000.0)
    assert rows["ruquant"]["memory_budget_mib"] == pytest.approx(900.0)
    assert rows["fp"]["quantize_memory_mib"] is None


def test_summary_memory_range_over_seeds(tmp_path) -> None:
    def memory(peak_mib: int) -> dict[str, int]:
        return {
            "quantize_peak_memory_bytes": peak_mib * 2**20,
            "baseline_memory_bytes": 500 * 2**20,
            "model_bytes": 400 * 2**20,
            "layer_activation_bytes": 100 * 2**20,
        }

    records = [_record("fp", 444, 20.0), _record("ruquant", 444, 30.0, **memory(1500))]
    records.append(_record("ruquant", 445, 31.0, **memory(1300)))
    write_markdown(records, tmp_path / "table.md")
    assert "| 800–1000 / 900 |" in (tmp_path / "table.md").read_text()
    write_markdown(records[:2], tmp_path / "one.md")
    assert "| 1000 / 900 |" in (tmp_path / "one.md").read_text()


def test_memory_by_phase_takes_maxima() -> None:
    marks = [
        {"phase": "input capture", "layer": None, "current_bytes": 100, "peak_bytes": 120},
        {"phase": "statistics pass", "layer": 0, "current_bytes": 150, "peak_bytes": 200},
        {"phase": "statistics pass", "layer": 1, "current_bytes": 140, "peak_bytes": 260},
        {"phase": "quantized pass", "layer": 1, "current_bytes": 130, "peak_bytes": 260},
    ]
    summary = memory_by_phase(marks)
    assert summary["statistics pass"] == {"max_current_bytes": 150, "max_peak_bytes": 260}
    assert list(summary) == ["input capture", "statistics pass", "quantized pass"]
    assert peak_phase(marks) == marks[2]
    assert peak_phase([]) is None


def test_stage2_memory_table_subtracts_matching_allocator(tmp_path) -> None:
    mib = 2**20
    rows = [
        {"allocator": a, "stage2": s, "growth_bytes": g * mib, "peak_phase": "stage 2" if s else "statistics pass",
         "saved_bytes_per_step": 300 * mib if s else 0.0, "quantize_seconds": 60.0}
        for a, s, g in [("default", False, 200), ("default", True, 800), ("pinned", False, 150), ("pinned", True, 450)]
    ]  # fmt: skip
    write_stage2_memory(rows, tmp_path / "stage2.md")
    lines = (tmp_path / "stage2.md").read_text().splitlines()[2:]
    assert lines[0].startswith("| default | no |  | 200 |  |")
    assert lines[1].startswith("| default | 1 epoch | whole window | 800 | 600 | stage 2 | 300 |")
    assert lines[3].startswith("| pinned | 1 epoch | whole window | 450 | 300 |")


def test_stage2_memory_merge_replaces_only_remeasured_cases() -> None:
    old = [
        {"allocator": "default", "stage2": False, "date": "old"},
        {"allocator": "default", "stage2": True, "date": "old"},  # written before token chunks: one pass
        {"allocator": "pinned", "stage2": True, "date": "old"},
    ]
    new = [
        {"allocator": "default", "stage2": False, "token_chunk": None, "date": "new"},
        {"allocator": "default", "stage2": True, "token_chunk": 256, "date": "new"},
    ]
    merged = merge_rows(old, new)
    cases = [(row["allocator"], row["stage2"], row.get("token_chunk"), row["date"]) for row in merged]
    assert cases == [
        ("default", False, None, "new"),
        ("default", True, None, "old"),
        ("default", True, 256, "new"),
        ("pinned", True, None, "old"),
    ]


@pytest.mark.parametrize(
    ("main", "argv", "message"),
    [
        (scale_main, ["--windows", "4"], "at least two distinct window counts"),
        (scale_main, ["--windows", "4", "4"], "at least two distinct window counts"),
        (scale_main, ["--windows", "0", "2"], "--windows must be positive"),
        (run_main, ["--stage2-epochs", "0"], "--stage2-epochs must be at least 1"),
        (run_main, ["--sites-only", "--full"], "--full has no effect"),
    ],
)
def test_benchmark_rejects_invalid_arguments(
    main: Callable[[list[str]], int], argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # These are rejected before any model is loaded, with argparse's usage error (exit status 2).
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err
