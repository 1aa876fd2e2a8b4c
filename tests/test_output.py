"""CSVTable: a table flushed while it grows (each row formatted once) writes the same file as one
written in a single flush, and rows replaced as a whole (a resume) are written anew."""

from creep_cathode.output import CSVTable


def _row(i):
    return {"step": i, "t": 0.1 * i, "name": f"r{i}", "x": 1.0 / (i + 1)}


def test_growing_table_writes_what_one_flush_writes(tmp_path):
    grown = CSVTable(tmp_path / "a.csv")
    for i in range(7):
        grown.append(_row(i), flush_every_s=0.0)
    CSVTable(tmp_path / "b.csv", [_row(i) for i in range(7)]).flush()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert CSVTable.read(tmp_path / "a.csv")[3] == {"step": 3, "t": 0.3, "name": "r3", "x": 0.25}


def test_replaced_rows_are_written_anew(tmp_path):
    t = CSVTable(tmp_path / "a.csv")
    for i in range(5):
        t.append(_row(i), flush_every_s=0.0)
    t.rows = [_row(i + 10) for i in range(3)]  # e.g. truncated to a checkpoint and re-read
    t.flush()
    assert [r["step"] for r in CSVTable.read(tmp_path / "a.csv")] == [10, 11, 12]
    t.rows = t.rows[:2]
    t.append(_row(20), flush_every_s=0.0)
    assert [r["step"] for r in CSVTable.read(tmp_path / "a.csv")] == [10, 11, 20]
