import gc

from kipvs.gc_pause import gc_paused


def test_what_a_pause_built_is_left_old_and_still_collectable():
    """After the pause, the objects it built are in the oldest generation (no young collection walks
    them), the young count starts again from zero, and a cycle among them is still collected."""
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        built = [[i] for i in range(5000)]
        cycle = [built[0]]
        cycle.append(cycle)
    assert gc.isenabled()
    assert gc.get_count()[0] < 100
    assert any(obj is built for obj in gc.get_objects(generation=2))
    del cycle
    assert gc.collect() >= 1  # the cycle, found by a full collection


def test_a_nested_pause_leaves_the_collector_off_until_the_outer_one_ends():
    with gc_paused():
        with gc_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
