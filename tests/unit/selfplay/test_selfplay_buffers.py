"""Buffers: the identity seed, reference and solver sampling, the cap, the induction split."""

from __future__ import annotations

import random

from flywheel.selfplay import buffers


def triplet(i: int, step: int) -> buffers.Triplet:
    return buffers.Triplet(f"def f(a):\n    return a + {i}", str(i), str(2 * i), step)


def test_seeded_with_the_identity_triplet_in_every_buffer() -> None:
    store = buffers.Buffers.seeded(cap=10)
    assert store.sizes() == {"abduction": 1, "deduction": 1, "induction": 1}
    seed = store.entries["deduction"][0]
    assert seed.code == "def f(a):\n    return a" and seed.output == "'Hello world'" and seed.step == 0
    task = store.entries["induction"][0]
    shown, hidden = task.split()
    assert len(shown) == 3 and len(hidden) == 3  # six inputs: 3 shown, 3 hidden
    assert shown[0] == ('"Hello world"', "'Hello world'")


def test_induction_split_is_n_over_2() -> None:
    task = buffers.FunctionTask("c", tuple("abcdefghij"), tuple("ABCDEFGHIJ"), "m")
    shown, hidden = task.split()
    assert [i for i, _ in shown] == list("abcde") and [o for _, o in hidden] == list("FGHIJ")


def test_references_are_k_distinct_entries_or_all_of_a_small_buffer() -> None:
    store = buffers.Buffers(cap=100)
    for i in range(10):
        store.add("abduction", triplet(i, 1))
    refs = store.references("abduction", 6, random.Random(0))
    assert len(refs) == 6 and len(set(refs)) == 6
    assert len(store.references("deduction", 6, random.Random(0))) == 0
    store.add("deduction", triplet(1, 1))
    assert len(store.references("deduction", 6, random.Random(0))) == 1


def test_induction_program_comes_from_the_union_of_abduction_and_deduction() -> None:
    store = buffers.Buffers(cap=100)
    store.add("abduction", triplet(1, 1))
    store.add("deduction", triplet(2, 1))
    seen = {store.induction_program(random.Random(seed)).input for seed in range(40)}
    assert seen == {"1", "2"}


def test_solver_batch_takes_last_steps_entries_first_then_pads_from_history() -> None:
    store = buffers.Buffers(cap=100)
    old = [triplet(i, 1) for i in range(20)]
    new = [triplet(100 + i, 4) for i in range(3)]
    for entry in old + new:
        store.add("deduction", entry)
    batch = store.solver_batch("deduction", 8, step=5, rng=random.Random(0))
    assert len(batch) == 8
    assert set(new) <= set(batch)  # every entry from step 4 (= step-1) is in
    many = store.solver_batch("deduction", 2, step=5, rng=random.Random(0))
    assert set(many) <= set(new)  # more new entries than the batch: only new ones


def test_solver_batch_repeats_when_the_buffer_is_smaller_than_the_batch() -> None:
    store = buffers.Buffers.seeded(cap=10)
    batch = store.solver_batch("abduction", 4, step=1, rng=random.Random(0))
    assert len(batch) == 4 and all(e is store.entries["abduction"][0] for e in batch)


def test_cap_keeps_the_oldest_entries_like_the_reference() -> None:
    store = buffers.Buffers(cap=2)
    assert store.add("abduction", triplet(1, 1)) and store.add("abduction", triplet(2, 1))
    assert not store.add("abduction", triplet(3, 2))
    assert [e.input for e in store.entries["abduction"]] == ["1", "2"]


def test_round_trip_through_a_dict() -> None:
    store = buffers.Buffers.seeded(cap=5)
    store.add("deduction", triplet(7, 3))
    again = buffers.Buffers.from_dict(store.to_dict())
    assert again.entries == store.entries and again.cap == 5
