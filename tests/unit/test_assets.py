import numpy as np

from anomaly.onset import history_windows
from worker.assets import AssetTable, WindowBuffer


def test_window_buffer_holds_the_latest_records_in_order() -> None:
    rows = np.arange(30.0).reshape(10, 3)
    buffer = WindowBuffer(window=4, n_features=3)
    window = np.empty((4, 3))
    for i, row in enumerate(rows):
        full = buffer.push(row)
        assert full is (i >= 3)  # warming up: fewer than 4 records seen
        if full:
            buffer.copy_last(window)
            np.testing.assert_array_equal(window, rows[i - 3 : i + 1])


def test_window_of_one_is_the_record_itself() -> None:
    buffer = WindowBuffer(window=1, n_features=2)
    window = np.empty((1, 2))
    for row in ([1.0, 2.0], [3.0, 4.0]):
        assert buffer.push(row)
        buffer.copy_last(window)
        np.testing.assert_array_equal(window, [row])


def test_a_longer_history_reads_the_latest_records_padded_with_the_oldest_seen() -> None:
    """A window of 3 in a ring of 7 (the onset rule's history): every read of 7 rows equals
    history_windows' padding of the series, through the ring's wrap-around."""
    rows = np.arange(40.0).reshape(20, 2)
    buffer = WindowBuffer(window=3, n_features=2, size=7)
    expected = history_windows(rows, 7)
    history, window = np.empty((7, 2)), np.empty((3, 2))
    for i, row in enumerate(rows):
        buffer.push(row)
        buffer.copy_last(history)
        np.testing.assert_array_equal(history, expected[i])
        buffer.copy_last(window)
        np.testing.assert_array_equal(window, expected[i][-3:])


def test_table_evicts_the_least_recently_seen_asset() -> None:
    table = AssetTable(max_assets=2, window=1, n_features=1)
    a, evicted = table.get("a")
    assert evicted is None
    table.get("b")
    assert table.get("a")[0] is a  # touching a makes b the least recently seen
    _, evicted = table.get("c")
    assert evicted is not None
    assert evicted[0] == "b"
    assert [asset for asset, _ in table] == ["a", "c"]
    assert len(table) == 2


def test_reshape_restarts_windows_but_keeps_alert_state() -> None:
    table = AssetTable(max_assets=10, window=1, n_features=2)
    state, _ = table.get("a")
    state.buffer.push([1.0, 2.0])
    state.rules.above_run = 2
    table.reshape(window=3, n_features=4)
    assert state.buffer.window == 3
    assert state.buffer.count == 0
    assert state.rules.above_run == 2
