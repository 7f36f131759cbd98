"""Rows per inference of batch-job chunks, tuned per version on the worker (workers.jobs.RunSizes):
halving from the largest size while rows/s improves, keeping the best."""

from workers.jobs import RunSizes

KEY = (1, "sha")


def drive(sizes: RunSizes, largest: int, seconds_for: dict[int, float], runs: int = 200) -> list[int]:
    """Run `runs` inferences as compute_chunk does, each size taking seconds_for[size]; the sizes asked."""
    asked = []
    for _ in range(runs):
        size = sizes.next(KEY, largest)
        asked.append(size)
        sizes.record(KEY, size, size, seconds_for[size])
    return asked


def test_a_version_faster_in_smaller_batches_settles_on_its_best_size() -> None:
    # rows/s: 512 → 1000, 256 → 1200, 128 → 1500, 64 → 1400 (worse: stop), so 128.
    rates = {512: 1000, 256: 1200, 128: 1500, 64: 1400}
    sizes = RunSizes()
    asked = drive(sizes, 512, {size: size / rate for size, rate in rates.items()})
    assert sizes.best[KEY] == 128
    assert asked[-1] == 128 and 32 not in asked  # it stopped halving once rows/s fell


def test_a_version_fastest_at_the_largest_size_keeps_it() -> None:
    rates = {1024: 900_000, 512: 700_000}
    sizes = RunSizes()
    drive(sizes, 1024, {size: size / rate for size, rate in rates.items()})
    assert sizes.best[KEY] == 1024


def test_a_shape_s_first_run_and_a_short_last_run_are_not_judged() -> None:
    sizes = RunSizes()
    sizes.record(KEY, 256, 256, 0.0)  # no trial yet: ignored
    assert sizes.next(KEY, 256) == 256
    sizes.record(KEY, 256, 256, 100.0)  # a first run allocating: not counted
    sizes.record(KEY, 256, 40, 0.001)  # a chunk's short last run: not counted
    assert sizes.trials[KEY] == [[256, 1, 0, 0.0]]


def test_one_row_at_a_time_stays_one_row() -> None:
    sizes = RunSizes()
    assert set(drive(sizes, 1, {1: 0.01}, runs=20)) == {1}
    assert sizes.best[KEY] == 1
