"""bench/distributed_report.py at tiny sizes (a smoke test: the numbers are checked for
sense, not against targets): mpiexec runs the workers at 2 ranks, the exchange and the
distributed fits are timed, the one-process references train, and the table and the
exchange model's check render."""
import distributed_report as dr


def test_quick_report_at_two_ranks():
    mode = {"rows": {"A": 512, "D": 256}, "calls": 3}
    measured = dr.run_ranks(2, ["A", "D"], mode)
    for name in "AD":
        r = measured[name]
        assert r["exchange_ms"] > 0 and r["samples_per_s"] > 0 and 0 < r["exchange_share"] < 1
    assert round(measured["A"]["grad_mb"], 2) == 0.94 and round(measured["D"]["grad_mb"], 2) == 8.44
    lines = dr.model_check(["A", "D"], [2], {2: measured})
    assert "alpha" in lines[0] and lines[-1].startswith("- D, 2 ranks:")
    ref = dr.reference("A", 512)
    assert ref["fused"] > 0 and ref["per_op"] > 0
